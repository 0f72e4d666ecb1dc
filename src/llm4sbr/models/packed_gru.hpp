// One GRU layer over packed sequences, forward and backward written out for the CPU. LibTorch's packed GRU
// runs each time step as a dozen small operations forward and more backward; a GRU4Rec batch of Beauty steps
// through up to 200 clicks with a few sessions left at most of them, so those per-operation costs, not the
// arithmetic, made its ~65 ms a batch. Here the input products of all steps are one matrix product, each
// step is one product plus one loop over its rows, and the backward pass makes the weight gradients as three
// products over all steps.
#pragma once

#include <torch/torch.h>

namespace llm4sbr::models {

/// PyTorch's GRU equations for one layer over the rows of a PackedSequence, from h_0 (zeros when not given):
///   r = σ(W_ir x + b_ir + W_hr h + b_hr),  z = σ(W_iz x + b_iz + W_hz h + b_hz),
///   n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),  h' = (1 − z) ⊙ n + z ⊙ h.
/// x: [P, d_in], PackedSequence::data's layout (time-major: batch_sizes[t] rows for step t, the sequences
/// sorted by decreasing length, so the sequences of step t are the first batch_sizes[t] of step t − 1);
/// batch_sizes: [T] int64 on the CPU, non-increasing, summing to P; w_ih [3d, d_in], w_hh [3d, d],
/// b_ih and b_hh [3d] (the gates stacked r, z, n, as torch::nn::GRU keeps them); h_0: [batch_sizes[0], d], the
/// first step's rows in the packed order, or undefined. Returns the states [P, d], one a row of x, with
/// gradients to x, the four parameters and h_0. With batch_sizes = {P} it is one GRU cell over P rows (SR-GNN's
/// gated graph step). float32 or float64 CPU tensors (the recommended path for GRU4Rec and SR-GNN on a CPU;
/// equal to torch::nn::GRU to float rounding: tests/models/packed_gru_test.cpp). Throws llm4sbr::Error for
/// other devices, dtypes or shapes.
torch::Tensor packed_gru_layer(const torch::Tensor& x, const torch::Tensor& batch_sizes, const torch::Tensor& w_ih,
                               const torch::Tensor& w_hh, const torch::Tensor& b_ih, const torch::Tensor& b_hh,
                               const torch::Tensor& h_0 = {});

}  // namespace llm4sbr::models
