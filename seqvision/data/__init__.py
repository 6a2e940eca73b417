"""seqvision.data"""
