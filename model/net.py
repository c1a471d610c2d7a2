"""The classic PyTorch-examples MNIST CNN: the one definition training and serving share."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    """conv 1→32 3×3, conv 32→64 3×3, max-pool 2, dropout .25, fc 9216→128, dropout .5,
    fc 128→10, log-softmax. Parameter names match the tutorial, so its state_dicts load."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)
