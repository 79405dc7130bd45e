"""Lowering: a plan plus a model become runtime artifacts (ExecuTorch .pte, ONNX graphs)."""
