"""Everything that runs torch: the network, decoding, training, storage, inference."""
