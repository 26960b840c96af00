// What ran, in words. Runtime ids arrive exactly as the GPU manifest advertises them (the record's
// `rendering`, and `gpu.runtimes` of GET /api/capabilities); a label names a model only for the id of
// that model's backend, so the page never claims a model that did not run. Unknown ids are shown as-is.

// One vocabulary for the manifest, the record, heartbeats and this page, in render order.
export const RENDER_STAGES = [
  "speech", "scene", "image_to_video", "talking_head", "lipsync", "captions", "music", "upscale", "mux",
];

export const STAGE_TITLES = {
  speech: "Voice", scene: "Scene", image_to_video: "Motion", talking_head: "Face", lipsync: "Mouth",
  captions: "Captions", music: "Music", upscale: "Upscaling", mux: "Encoding",
  // Not stages: what of the profile the render used (`rendering.voice`, `.portrait`, `.lora`).
  voice: "From your profile", portrait: "From your profile", lora: "From your profile",
};

const RUNTIME_LABELS = {
  procedural: "procedural backdrop",
  "ken-burns": "Ken Burns camera",
  "embedded-visemes": "mouth shaped to the phonemes (face mesh)",
  "embedded-face-mesh": "animated portrait (face mesh)",
  // Ids of jobs rendered before the face mesh: the mouth followed the loudness.
  "embedded-mouth": "mouth moved with the loudness",
  "embedded-face": "animated portrait (loudness-driven mouth)",
  "diffusers-sd": "Stable Diffusion",
  "diffusers-svd": "Stable Video Diffusion",
  comfyui: "ComfyUI",
  wav2lip: "Wav2Lip",
  sadtalker: "SadTalker",
  realesrgan: "Real-ESRGAN",
  "ffmpeg-lanczos": "Lanczos resize",
  ffmpeg: "FFmpeg",
  "word-timed": "timed per word",
  // Captions of jobs rendered before word timing.
  "sentence-timed": "timed per sentence",
  "synthesised-bed": "music bed synthesised by our code",
  "uploaded-music": "your music",
  "uploaded-media": "your photos and clips",
  "media-montage": "a scene per sentence (Ken Burns on photos, crossfades)",
  "profile-clone": "your trained voice",
  "profile-pace": "your speaking pace",
  "profile-portrait": "your portrait",
  "profile-lora": "your trained likeness (LoRA)",
};

// Backends that run a model's downloaded weights or a model service; everything else is embedded.
const MODEL_BACKENDS = new Set([
  "diffusers-sd", "diffusers-svd", "comfyui", "wav2lip", "sadtalker", "realesrgan", "coqui", "coqui-xtts",
]);

// What each variant does on the embedded path, and the backend (by stage) that earns it the model's name.
const VARIANTS = {
  svd: {
    title: "Animated scene",
    description: "An animated scene with the presenter composed in: a slow camera move and a moving mouth.",
    stage: "image_to_video", backend: "diffusers-svd", model: "SVD",
  },
  sadtalker: {
    title: "Animated portrait",
    description: "An animated portrait: the face talks, blinks and nods with the voice.",
    stage: "talking_head", backend: "sadtalker", model: "SadTalker",
  },
};

// The stages whose model backends the form names (speech is chosen with the voice, encoding is never a model).
const NAMED_STAGES = ["scene", "image_to_video", "talking_head", "lipsync", "upscale"];

/** `en_US-joe-medium` → `joe, en-US`; other names as they are. */
function voiceName(voice) {
  const m = voice.match(/^([a-z]{2,3})_([A-Z]{2})-(.+)-(x_low|low|medium|high)$/);
  return m ? `${m[3]}, ${m[1]}-${m[2]}` : voice;
}

/** The readable label of one runtime id (unknown ids come back unchanged). */
export function runtimeLabel(id) {
  const colon = id.indexOf(":");
  const engine = colon < 0 ? id : id.slice(0, colon);
  const detail = colon < 0 ? "" : id.slice(colon + 1);
  if (engine === "piper") return detail ? `Piper neural voice (${voiceName(detail)})` : "Piper neural voice";
  if (engine.startsWith("espeak-ng")) return "eSpeak NG (formant synthesizer)";
  if (engine === "coqui-xtts") return "Coqui XTTS v2 (voice cloning)";
  if (engine.startsWith("coqui")) return "Coqui TTS";
  return RUNTIME_LABELS[id] ?? id;
}

const isModel = (id) => MODEL_BACKENDS.has(id?.split(":")[0]);

// After the stages: what of the profile the render used.
const PROFILE_PARTS = ["voice", "portrait", "lora"];

/** `[stage, runtime id]` pairs of a record's `rendering`: stages in render order, the profile's parts, then others. */
export function renderingEntries(rendering) {
  const entries = Object.entries(rendering ?? {});
  const order = [...RENDER_STAGES, ...PROFILE_PARTS];
  const rank = ([stage]) => {
    const i = order.indexOf(stage);
    return i < 0 ? order.length : i;
  };
  return entries.sort((a, b) => rank(a) - rank(b));
}

/** A variant's name; the model's only when `ran` (stage → runtime id) says its backend ran or would run. */
export function variantTitle(variant, ran = {}) {
  const v = VARIANTS[variant];
  if (!v) return variant;
  return ran?.[v.stage] === v.backend ? `${v.title} (${v.model})` : v.title;
}

/** What a variant does, naming the model backends only that the preferred runtimes (`ran`) would run. */
export function variantDescription(variant, ran = {}) {
  const v = VARIANTS[variant];
  if (!v) return "";
  const models = NAMED_STAGES.map((stage) => ran?.[stage]).filter(isModel).map(runtimeLabel);
  return models.length ? `${v.description} Uses ${models.join(", ")}.` : v.description;
}

/** The preferred (first) runtime of each stage a variant advertises: `{variant: {stage: [ids]}}` → `{stage: id}`. */
export function preferredRuntimes(runtimes, variant) {
  const stages = runtimes?.[variant];
  if (!stages || typeof stages !== "object" || Array.isArray(stages)) return {};
  return Object.fromEntries(
    Object.entries(stages).filter(([, ids]) => Array.isArray(ids) && ids.length).map(([stage, ids]) => [stage, ids[0]]));
}
