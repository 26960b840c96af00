"""CPU-queue activities (control plane) and the CPU worker."""
