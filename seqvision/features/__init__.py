"""seqvision.features"""
