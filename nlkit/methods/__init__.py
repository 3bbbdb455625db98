"""The papers' methods, each on top of nlkit.train."""
