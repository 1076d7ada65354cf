"""Fine-tuning: LoRA adapters (lora), the data (data), the objectives (losses), the training
forward (forward) and the loop (loop), standing on `models/` and the inference preprocessing."""
