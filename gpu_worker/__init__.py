"""GPU-queue activities (training, rendering), their media runtimes and the GPU worker."""
