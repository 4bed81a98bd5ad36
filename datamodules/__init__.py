"""LightningDataModules for image classification (CIFAR-10, CIFAR-10-LT, ImageNet, class folders)."""
