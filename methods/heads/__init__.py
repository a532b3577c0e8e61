"""Trained draft heads (Medusa, Hydra, EAGLE, ...): their modules and weight loading.

A head is a small network on the target's hidden states; its drafter lives in methods/drafters/
and its training in training/.
"""
