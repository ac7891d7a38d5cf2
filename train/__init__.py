"""SoftCon pretraining (``python -m train.pretrain``) and evaluation (``python -m train.linear_probe``)."""
