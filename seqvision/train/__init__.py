"""seqvision.train"""
