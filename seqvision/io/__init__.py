"""seqvision.io"""
