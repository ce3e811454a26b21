"""One module per training objective (teacher forcing, distillation, GAN, CTC, onset/frame)."""
