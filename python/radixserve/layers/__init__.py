"""Model building blocks. Each op has a native kernel path and a plain-PyTorch reference path."""
