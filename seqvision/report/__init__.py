"""seqvision.report"""
