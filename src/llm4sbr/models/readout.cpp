#include "llm4sbr/models/readout.hpp"

#include "llm4sbr/core/linalg.hpp"

namespace llm4sbr::models {

torch::Tensor hybrid_readout(torch::nn::Linear& fuse, const SessionRepresentation& rep, bool nonhybrid,
                             const torch::Tensor& single) {
  if (nonhybrid) return single;
  return fuse(torch::cat({rep.global, rep.local}, 1));
}

torch::Tensor embedding_scores(const torch::Tensor& session, const torch::Tensor& table, std::int64_t n_items) {
  return times_transposed(session, table.narrow(0, 1, n_items));  // E[1:], [N, d]
}

}  // namespace llm4sbr::models
