// The `device` setting: what it accepts, and the clear error for CUDA on a build or machine without it.
#include "llm4sbr/train/device.hpp"

#include <gtest/gtest.h>

#include <string>

#include "llm4sbr/core/error.hpp"
#include "test_support.hpp"

namespace llm4sbr::train {
namespace {

std::string error_of(const std::string& setting) {
  try {
    resolve_device(setting);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Device, CpuAndAutoResolve) {
  EXPECT_TRUE(resolve_device("cpu").is_cpu());
  EXPECT_EQ(resolve_device("auto").is_cuda(), torch::cuda::is_available());
  Config cfg;
  EXPECT_EQ(device_from_config(cfg).is_cuda(), torch::cuda::is_available());  // auto by default
  cfg.set("device", "cpu");
  EXPECT_TRUE(device_from_config(cfg).is_cpu());
}

TEST(Device, MalformedSettingsAreErrorsNamingTheKey) {
  for (const std::string bad : {"gpu", "cuda:", "cuda:x", "cuda0", "CPU", "", "cuda:1:2", "cuda:-1"}) {
    SCOPED_TRACE(bad);
    const auto what = error_of(bad);
    EXPECT_NE(what.find("device"), std::string::npos) << what;
    EXPECT_NE(what.find("expected auto, cpu, cuda or cuda:N"), std::string::npos) << what;
  }
}

TEST(Device, CudaWithoutCudaSaysWhyAndHow) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "this machine has a CUDA GPU";
  for (const std::string setting : {"cuda", "cuda:0", "cuda:3"}) {
    SCOPED_TRACE(setting);
    const auto what = error_of(setting);
    if (torch::hasCUDA()) {
      EXPECT_NE(what.find("no CUDA GPU is visible"), std::string::npos) << what;
    } else {
      EXPECT_NE(what.find("without CUDA"), std::string::npos) << what;
      EXPECT_NE(what.find("Building for a GPU"), std::string::npos) << what;
    }
  }
}

TEST(Device, TheCliRefusesCudaBeforeAnyWork) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "this machine has a CUDA GPU";
  llm4sbr::testing::TempDir dir;
  const int rc = llm4sbr::testing::run_logged(
      fmt::format("cd '{}' && '{}' run --config configs/beauty.yaml --set device=cuda --out '{}'", LLM4SBR_SOURCE_DIR,
                  LLM4SBR_CLI, (dir / "out").string()),
      dir / "log");
  EXPECT_EQ(rc, 2);
  const auto log = llm4sbr::testing::read_text(dir / "log");
  EXPECT_NE(log.find("device = 'cuda'"), std::string::npos) << log;
  EXPECT_FALSE(std::filesystem::exists(dir / "out" / "stages")) << "work was done before the error";
}

}  // namespace
}  // namespace llm4sbr::train
