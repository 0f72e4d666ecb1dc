// Training jobs from the command line: `--nproc N` starts N ranks of this same command on this machine
// (torchrun's conventions, so that torchrun itself can start them instead), and every rank joins the job that
// its environment describes (train/distributed.hpp).
#pragma once

#include <string>
#include <vector>

#include "cli.hpp"

namespace llm4sbr::cli {

/// Keeps main's arguments: --nproc runs them again in each rank.
void remember_arguments(int argc, char** argv);

/// --nproc N (processes on this machine) and --dist-timeout SECONDS, for the commands that train.
void add_distributed(CLI::App* cmd, Options& o);

/// With --nproc N > 1: starts N ranks of this command (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
/// MASTER_ADDR=127.0.0.1, $MASTER_PORT or a free port, and OMP_NUM_THREADS / OPENBLAS_NUM_THREADS = cores / N unless
/// set; OMP_NUM_THREADS alone sets both), waits for them and returns true; this process trains nothing. When
/// one rank fails, the others get a few seconds to fail on their own, then SIGTERM, then SIGKILL; ranks die
/// with the launcher (PDEATHSIG). Throws Error naming the first rank that stopped and how; on SIGINT/SIGTERM
/// (the user's), stops the ranks and exits 128 + the signal. Returns false without --nproc (or N = 1).
bool launch_ranks(const Options& o);

/// Joins the job of this process's environment, if any (torchrun's variables): rank 0 logs and shows progress,
/// the other ranks only warnings and errors, each line with its rank. Throws what Distributed does, and
/// ConfigError when the ranks' settings `cfg` differ (paths, threads and device aside).
void join_job(const Options& o, const Config& cfg);

}  // namespace llm4sbr::cli
