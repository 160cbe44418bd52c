"""Encoders/decoders between model outputs and geometric quantities."""
