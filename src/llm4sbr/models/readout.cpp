#include "llm4sbr/models/readout.hpp"

#include "llm4sbr/core/linalg.hpp"

namespace llm4sbr::models {

torch::Tensor hybrid_readout(torch::nn::Linear& fuse, const SessionRepresentation& rep, bool nonhybrid,
                             const torch::Tensor& single) {
  if (nonhybrid) return single;
  return fuse(torch::cat({rep.global, rep.local}, 1));
}

namespace {

// S = session · E[1:]ᵀ with the table's gradient made as a whole [N + 1, d] tensor: dE[1:] = dSᵀ session is
// written into it and only the padding row is zeroed. Autograd's own narrow backward zeroes a table-sized
// tensor and copies the [N, d] product into it: two more passes over the table's 1.2 M values a training
// step (Beauty), each ~0.2-0.4 ms on this machine when the table is not in cache.
struct EmbeddingScores : torch::autograd::Function<EmbeddingScores> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& session,
                               const torch::Tensor& table, std::int64_t n_items) {
    ctx->save_for_backward({session, table});
    return times_transposed(session, table.narrow(0, 1, n_items));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const auto &session = saved[0], &table = saved[1];
    const auto& d_scores = grad[0];  // [B, N]
    const auto n_items = d_scores.size(1);
    auto d_table = torch::empty_like(table, torch::MemoryFormat::Contiguous);
    d_table[0].zero_();
    auto rows = d_table.narrow(0, 1, n_items);
    torch::mm_out(rows, d_scores.t(), session);
    return {d_scores.mm(table.narrow(0, 1, n_items)), d_table, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor embedding_scores(const torch::Tensor& session, const torch::Tensor& table, std::int64_t n_items) {
  const auto items = table.narrow(0, 1, n_items);  // E[1:], [N, d]
  if (!torch::GradMode::is_enabled() || !table.requires_grad()) return times_transposed(session, items);
  return EmbeddingScores::apply(session, table, n_items);
}

LinearScorer embedding_scorer(const torch::Tensor& table, std::int64_t n_items, torch::Tensor bias) {
  return {table.narrow(0, 1, n_items), std::move(bias)};
}

torch::Tensor item_lookup(const torch::Tensor& table, const torch::Tensor& ids) {
  // Only on a CPU, where the dense gradient's passes over the table were measured; a GPU's are cheap, and its
  // sparse accumulation sorts the indices.
  return torch::nn::functional::embedding(
      ids, table, torch::nn::functional::EmbeddingFuncOptions().sparse(table.device().is_cpu()));
}

}  // namespace llm4sbr::models
