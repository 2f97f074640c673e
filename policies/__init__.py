"""Policy models and their portable form (the PolicyBundle) that leave training.

Never imports ``robotrl``: the core imports policies, not the reverse, so a robot computer or an
exporter can load a policy without the training stack.
"""
