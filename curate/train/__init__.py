"""From corpus to training run: token ids written as the indexed datasets a Megatron-LM trainer reads."""
