"""The generic backbone: transformers' image-text-to-text models (Qwen-VL families)."""
