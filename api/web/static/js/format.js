// Words and numbers for people.

import { variantTitle } from "./runtimes.js";

export const MODE_LABELS = { generate: "Generate", train_and_generate: "Train+Generate", train_only: "Train only" };
export const STATUS_LABELS = {
  queued: "Queued", running: "Running", completed: "Completed", failed: "Failed", cancelled: "Cancelled",
};
export const NODE_LABELS = {
  script: "Write the script",
  profile: "Profile",
  select: "Plan the render",
  review: "Review the script",
  train_lora: "Learn the face",
  train_voice: "Learn the voice",
  render: "Render the video",
  register: "Save the outputs",
};
// Heartbeat stages: the render stage vocabulary (see runtimes.js) and the renderer's own steps.
export const STAGE_LABELS = {
  speech: "speech", scene: "scene", image_to_video: "animating", talking_head: "animating the face",
  lipsync: "moving the mouth", captions: "captions", music: "music", upscale: "upscaling", mux: "encoding",
  animate: "animating", encode: "encoding", thumbnail: "thumbnail", upload: "uploading", done: "done",
};
export const ARTIFACT_LABELS = {
  video: "Video", captions: "Captions", audio: "Narration audio", thumbnail: "Thumbnail",
  scene: "Scene image", base_clip: "Silent clip", lora: "LoRA weights", voice: "Voice profile", portrait: "Portrait",
};
// Caption files by format, in the order the downloads list them; matched by content type, else by file suffix.
export const CAPTION_FORMATS = [
  { contentType: "application/x-subrip", suffix: ".srt", name: "SRT" },
  { contentType: "text/vtt", suffix: ".vtt", name: "WebVTT" },
  { contentType: "text/x-ssa", suffix: ".ass", name: "ASS" },
];
export const TERMINAL = new Set(["completed", "failed", "cancelled"]);

/** "Generate · Animated scene"; the variant names its model only when `rendering` says the model ran. */
export const jobTitle = (mode, variant, rendering = {}) =>
  `${MODE_LABELS[mode] ?? mode} · ${variantTitle(variant, rendering)}`;

/** The index of an artifact's caption format in `CAPTION_FORMATS`, or -1. */
export function captionFormat(artifact) {
  const byType = CAPTION_FORMATS.findIndex((f) => f.contentType === artifact.contentType);
  if (byType >= 0) return byType;
  const path = (artifact.uri ?? artifact.url ?? "").split("?")[0].toLowerCase();
  return CAPTION_FORMATS.findIndex((f) => path.endsWith(f.suffix));
}

/** "Video", "Captions (WebVTT)", …; an unknown kind as it is. */
export function artifactLabel(artifact) {
  const label = ARTIFACT_LABELS[artifact.kind] ?? artifact.kind;
  if (artifact.kind !== "captions") return label;
  const format = CAPTION_FORMATS[captionFormat(artifact)];
  return format ? `${label} (${format.name})` : label;
}

export function nodeLabel(id) {
  return NODE_LABELS[id] ?? id.replace(/[_-]+/g, " ").replace(/^./, (c) => c.toUpperCase());
}

export function bytes(n) {
  if (n == null) return "";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

export function seconds(s) {
  if (s == null || Number.isNaN(s)) return "";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

export function elapsed(from, to) {
  if (!from) return null;
  return (new Date(to ?? Date.now()) - new Date(from)) / 1000;
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export function when(iso) {
  const date = new Date(iso);
  const diff = (date - Date.now()) / 1000;
  if (Math.abs(diff) < 45) return "just now";
  if (Math.abs(diff) < 3600) return relative.format(Math.round(diff / 60), "minute");
  if (Math.abs(diff) < 86400) return relative.format(Math.round(diff / 3600), "hour");
  return absolute.format(date);
}

export const fullTime = (iso) => absolute.format(new Date(iso));
