"""seqvision.metrics"""
