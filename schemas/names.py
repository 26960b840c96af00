"""Names that cross process boundaries: task queues, activity names, search attributes."""

from typing import Final

CPU_TASK_QUEUE: Final = "myspinbot-cpu"
GPU_TASK_QUEUE: Final = "myspinbot-gpu"

PIPELINE_WORKFLOW: Final = "PipelineWorkflow"
RETENTION_WORKFLOW: Final = "RetentionWorkflow"
BATCH_WORKFLOW: Final = "BatchWorkflow"
CANCEL_BATCH_JOBS: Final = "cancel_jobs"  # `BatchWorkflow`'s signal (`schemas.tasks.CancelJobsInput`)
# `BatchWorkflow`'s memo key: the jobs cancelled before they started (the API tells them from queued ones).
BATCH_SKIPPED_MEMO: Final = "skippedJobs"
RETENTION_SCHEDULE_ID: Final = "myspinbot-upload-retention"

# Activity names are the seed's task names, so history reads like the graph.
GENERATE_SCRIPT: Final = "script.generateScript"
RESOLVE_PROFILE: Final = "profiles.resolveOrCreate"
LOAD_PROFILE: Final = "profiles.loadExisting"
SELECT_PIPELINE: Final = "planner.selectPipeline"
REGISTER_OUTPUTS: Final = "artifacts.registerOutputs"
NOTIFY_CALLBACK: Final = "callbacks.notify"
TRAIN_LORA: Final = "train_lora"
TRAIN_VOICE: Final = "train_voice"
RENDER_VIDEO: Final = "render_video"
EXPIRE_UPLOADS: Final = "retention.expireUploads"  # run by the retention schedule, not by job graphs
# A person approves the script: built into the workflow (it waits on the `REVIEW_UPDATE` Update), no activity.
APPROVE_SCRIPT: Final = "human.approveScript"
REVIEW_UPDATE: Final = "reviewScript"
REVIEW_TIMER: Final = "review"  # the summary of the timer the review waits with: the status fold finds it by it
# A job ends itself `cancelled` (a rejected or timed-out review) by asking the server to cancel it:
# a workflow cannot cancel its own execution, so a CPU activity does it through the client.
REQUEST_CANCEL: Final = "jobs.requestCancel"

CPU_TASKS: Final = (GENERATE_SCRIPT, RESOLVE_PROFILE, LOAD_PROFILE, SELECT_PIPELINE, REGISTER_OUTPUTS, NOTIFY_CALLBACK)
BUILT_IN_TASKS: Final = (APPROVE_SCRIPT,)  # run by the workflow itself: no worker advertises them
GPU_TASKS: Final = (TRAIN_LORA, TRAIN_VOICE, RENDER_VIDEO)

# Keyword search attributes set on every job (filterable in the Web UI).
SA_JOB_MODE: Final = "JobMode"
SA_VARIANT: Final = "Variant"
SA_PROFILE_ID: Final = "ProfileId"
SA_USER_ID: Final = "UserId"
SA_BATCH_ID: Final = "BatchId"  # the batch a job was submitted in (and the batch workflow's own id)
SA_REVIEW_STATE: Final = (
    "ReviewState"  # jobs with `options.review`: pending → waiting → approved | rejected | timed_out
)
SEARCH_ATTRIBUTES: Final = (SA_JOB_MODE, SA_VARIANT, SA_PROFILE_ID, SA_USER_ID, SA_BATCH_ID, SA_REVIEW_STATE)

UPLOADS_BUCKET: Final = "uploads"
ARTIFACTS_BUCKET: Final = "artifacts"

# Error types of `ApplicationError`s: raisers, retry policies and tests use these names.
ERR_INVALID_INPUT: Final = "InvalidInput"
ERR_NO_FACE_IN_PORTRAIT: Final = "NoFaceInPortrait"
ERR_MISSING_WEIGHTS: Final = "MissingWeights"
ERR_SCRIPT_INVALID: Final = "ScriptInvalid"
ERR_PROFILE_NOT_FOUND: Final = "ProfileNotFound"
ERR_CONSENT_MISSING: Final = "ConsentMissing"
ERR_MISSING_OUTPUT: Final = "MissingOutput"
ERR_RENDER_STAGE_FAILED: Final = "RenderStageFailed"
ERR_BACKEND_FAILED: Final = "BackendFailed"
ERR_WORKER_SHUTDOWN: Final = "WorkerShutdown"
ERR_NODE_FAILED: Final = "NodeFailed"
ERR_TIMED_OUT: Final = "TimedOut"
ERR_CALLBACK_NOT_CONFIGURED: Final = "CallbackNotConfigured"
ERR_CALLBACK_REFUSED: Final = "CallbackRefused"
ERR_CALLBACK_UNREACHABLE: Final = "CallbackUnreachable"
ERR_CALLBACK_REJECTED: Final = "CallbackRejected"
ERR_CALLBACK_FAILED: Final = "CallbackFailed"
ERR_REVIEW_CLOSED: Final = "ReviewClosed"  # a review action when the job is not waiting for one (409)
ERR_REVIEW_INVALID: Final = "ReviewInvalid"  # a review action whose fields are wrong (422)

# Music uploads (`POST /api/uploads` with purpose=music and the rights confirmed) are named
# `s3://uploads/<user>/music-<hex>.<ext>`: `options.music` accepts only those.
MUSIC_UPLOAD_PREFIX: Final = "music-"
