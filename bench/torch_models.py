"""The documents' models in PyTorch, as /work/shared/reference/torch_seed_models.py defines them, for the
benchmark scripts beside this file and the fixture generators in tests/fixtures: the CNN with its norm
layer chosen by name (the reference's CNNWithBatchNorm with "bn" / "in", plus GroupNorm(32, 64) as
"gn") and RNNWithLayerNorm. The twins of examples/common/models.h; parameter names match, so state
dicts move between the two."""
import torch.nn as nn


class CNN(nn.Module):
    def __init__(s, norm="bn"):
        super().__init__()
        s.conv1 = nn.Conv2d(3, 64, kernel_size=3, padding=1)
        s.bn1 = {"bn": lambda: nn.BatchNorm2d(64), "in": lambda: nn.InstanceNorm2d(64),
                 "gn": lambda: nn.GroupNorm(32, 64)}[norm]()
        s.relu = nn.ReLU()
        s.pool = nn.MaxPool2d(2, 2)
        s.fc = nn.Linear(64 * 16 * 16, 10)

    def forward(s, x):
        x = s.pool(s.relu(s.bn1(s.conv1(x))))
        return s.fc(x.view(-1, 64 * 16 * 16))


class RNNWithLayerNorm(nn.Module):
    def __init__(s, input_size=100, hidden_size=128):
        super().__init__()
        s.rnn = nn.LSTM(input_size, hidden_size, num_layers=2)
        s.ln = nn.LayerNorm(hidden_size)
        s.fc = nn.Linear(hidden_size, 10)

    def forward(s, x):
        x, _ = s.rnn(x)
        x = s.ln(x)
        return s.fc(x[-1])
