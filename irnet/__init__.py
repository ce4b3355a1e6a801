"""IRNet and its comparison networks (SRNet, plain deep network, ElemNet) under the benchmark's Model contract:
:mod:`irnet.networks` builds them, :mod:`irnet.training` trains them, :mod:`irnet.models` declares them."""
