// embedding_scores against the composed product on the table without its padding row: the same scores and the
// same gradients of the session and of the whole table (row 0 gets none).
#include "llm4sbr/models/readout.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace llm4sbr::models {
namespace {

TEST(Readout, EmbeddingScoresGradientsAreTheComposedProducts) {
  for (const auto dtype : {torch::kFloat64, torch::kFloat32}) {
    torch::manual_seed(6);
    const auto session = torch::randn({7, 5}, dtype), table = torch::randn({12, 5}, dtype);
    const auto weights = torch::randn({7, 11}, dtype);
    auto s1 = session.clone().requires_grad_(), t1 = table.clone().requires_grad_();
    auto s2 = session.clone().requires_grad_(), t2 = table.clone().requires_grad_();
    const auto mine = embedding_scores(s1, t1, 11);
    const auto theirs = s2.mm(t2.narrow(0, 1, 11).t());
    const double tolerance = dtype == torch::kFloat64 ? 1e-12 : 1e-5;
    EXPECT_TRUE(torch::allclose(mine, theirs, tolerance, tolerance));
    (mine * weights).sum().backward();
    (theirs * weights).sum().backward();
    EXPECT_TRUE(torch::allclose(s1.grad(), s2.grad(), tolerance, tolerance));
    EXPECT_TRUE(torch::allclose(t1.grad(), t2.grad(), tolerance, tolerance));
    EXPECT_TRUE(torch::equal(t1.grad()[0], torch::zeros({5}, dtype)));
  }
}

// item_lookup then embedding_scores, as the backbones use the table: the lookup's sparse gradient is added into
// the scores' dense one, so the table's gradient is dense and equals that of a dense lookup (repeated ids too).
TEST(Readout, ItemLookupAddsItsRowsIntoTheScoresDenseGradient) {
  torch::manual_seed(8);
  const auto table = torch::randn({12, 5}, torch::kFloat64);
  const auto ids = torch::tensor({3L, 7L, 3L, 11L});
  const auto weights = torch::randn({4, 11}, torch::kFloat64);
  auto t1 = table.clone().requires_grad_(), t2 = table.clone().requires_grad_();
  const auto mine = item_lookup(t1, ids);
  const auto theirs = torch::nn::functional::embedding(ids, t2);
  EXPECT_TRUE(torch::equal(mine, theirs));
  (embedding_scores(mine, t1, 11) * weights).sum().backward();
  (embedding_scores(theirs, t2, 11) * weights).sum().backward();
  ASSERT_FALSE(t1.grad().is_sparse());
  EXPECT_TRUE(torch::allclose(t1.grad(), t2.grad(), 1e-12, 1e-12));
}

}  // namespace
}  // namespace llm4sbr::models
