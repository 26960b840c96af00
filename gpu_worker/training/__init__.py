"""Training activities: LoRA on the UNet (diffusers + peft) and the voice profile (espeak-ng parameters)."""
