"""He et al.'s LSTM-VAE (2019) in PyTorch: the paired benchmark's reference.

The same networks and work per step as the library's plain text step
(registry "lstm", init "he"): an embedding and an LSTM encoder whose state at
each sentence's </s> maps linearly (no bias) to mean and log-variance; a
decoder with its own embedding, dropout on it, z concatenated to every
input, an initial cell state linear in z (hidden = tanh(cell)), dropout on
its outputs and a bias-free projection to the vocabulary's softmax; loss the
batch mean of reconstruction plus KL (nats); SGD with the gradient's global
norm clipped. Needs torch (the `bench` extra); only the benchmark imports it.
"""

import torch
from torch import nn
from torch.nn import functional


class LSTMVAE(nn.Module):
  """Sentences int64 [B, T] (0: padding, <s> first) -> loss, a scalar."""

  def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int,
               latent_dim: int, dropout: float = 0.5):
    super().__init__()
    self.encoder_embedding = nn.Embedding(vocab_size, embed_dim)
    self.encoder_lstm = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
    self.to_params = nn.Linear(hidden_dim, 2 * latent_dim, bias=False)
    self.decoder_embedding = nn.Embedding(vocab_size, embed_dim)
    self.z_to_cell = nn.Linear(latent_dim, hidden_dim, bias=False)
    self.decoder_lstm = nn.LSTM(embed_dim + latent_dim, hidden_dim,
                                batch_first=True)
    self.dropout = nn.Dropout(dropout)
    self.to_vocab = nn.Linear(hidden_dim, vocab_size, bias=False)
    for name, weight in self.named_parameters():     # He et al.'s ranges
      bound = 0.1 if "embedding" in name else 0.01
      nn.init.uniform_(weight, -bound, bound)

  def forward(self, tokens: torch.Tensor) -> torch.Tensor:
    batch = tokens.shape[0]
    lengths = (tokens != 0).sum(1)
    states, _ = self.encoder_lstm(self.encoder_embedding(tokens))
    last = states[torch.arange(batch), lengths - 1]    # the state at </s>
    mu, logvar = self.to_params(last).chunk(2, dim=-1)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    inputs, target = tokens[:, :-1], tokens[:, 1:]
    embedded = self.dropout(self.decoder_embedding(inputs))
    z_every_step = z[:, None].expand(-1, inputs.shape[1], -1)
    cell = self.z_to_cell(z)[None]
    hidden, _ = self.decoder_lstm(torch.cat([embedded, z_every_step], -1),
                                  (torch.tanh(cell), cell))
    logits = self.to_vocab(self.dropout(hidden))
    reconstruction = functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
        ignore_index=0, reduction="none").view(batch, -1).sum(1)
    kl = 0.5 * (mu.square() + logvar.exp() - logvar - 1.0).sum(1)
    return (reconstruction + kl).mean()


def train_step_fn(tokens, vocab_size: int, embed_dim: int, hidden_dim: int,
                  latent_dim: int, dropout: float = 0.5,
                  learning_rate: float = 1.0, clip_norm: float = 5.0,
                  seed: int = 0):
  """A zero-argument function running one SGD step of a new LSTMVAE on
  `tokens` (int [B, T], any array) and returning the loss (a float)."""
  torch.manual_seed(seed)
  model = LSTMVAE(vocab_size, embed_dim, hidden_dim, latent_dim, dropout)
  model.train()
  optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
  tokens = torch.as_tensor(tokens, dtype=torch.int64)

  def step() -> float:
    optimizer.zero_grad(set_to_none=True)
    loss = model(tokens)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    optimizer.step()
    return float(loss.detach())

  return step
