//! Sparse-ready models of the RigL paper (MNIST MLP, WideResNet, ResNet-50, MobileNet v1/v2) and the FLOP / model-size counter.
