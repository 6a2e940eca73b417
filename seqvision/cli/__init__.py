"""seqvision.cli"""
