"""IRNet and its comparison networks (SRNet, plain deep network, ElemNet) under the benchmark's Model contract."""
from irnet.models import NETWORK_MODELS, ElemNetModel, IRNetModel, NetworkModel, PlainNetModel, SRNetModel
from irnet.networks import ARCHITECTURES, ARCHS, build_model, count_parameters

__all__ = [
    "ARCHITECTURES",
    "ARCHS",
    "NETWORK_MODELS",
    "ElemNetModel",
    "IRNetModel",
    "NetworkModel",
    "PlainNetModel",
    "SRNetModel",
    "build_model",
    "count_parameters",
]
