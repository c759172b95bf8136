"""The network the seed article explains: config, attention, the encoder-decoder, loss."""
