"""seqvision.models"""
