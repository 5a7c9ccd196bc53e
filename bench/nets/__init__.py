"""Network architectures (no training or restoration logic): flow layers, the flow prior, SRFlow, DeFlow, the DIP skip net, the DAE."""
