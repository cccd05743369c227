"""Pretraining: the train state, the jitted ActCLR step, and the trainer loop."""
