// RLtools "learning to fly": SAC on the L2F quadrotor, time to hover.
//
// A small standalone trainer written against the header-only RLtools library shipped in the
// `rltools` 2.2.1 pip package (rltools/external/rl_tools/include). It instantiates RLtools'
// own templates (L2F environment, SAC loop core, MLPs, Adam) with the configuration of the
// RLtools zoo entry for L2F SAC (src/rl/zoo/l2f/sac.h + src/rl/zoo/l2f/environment.h at the
// upstream commit whose include/ tree matches the pip headers), and adds a hover evaluation:
//
//   every --eval-every env steps the current deterministic policy (tanh of the actor's mean)
//   flies --eval-episodes episodes of 500 steps from the env's initial-state distribution
//   (fixed evaluation seed, so every evaluation sees the same start states); an episode is a
//   HOVER when it never terminates and the position error norm stays below 0.05 m over its
//   last 200 steps (2 s at 100 Hz). Training stops at success rate >= --threshold or at
//   --max-steps (or --time-limit seconds).
//
// Output (stdout, one record per line, parsed by rltools_l2f_hover.py):
//   CONFIG {json}      once, before training
//   EVAL {json}        after every evaluation
//   DONE {json}        at the end
// Build: see rltools_l2f_hover.py (g++ -std=c++17 -O3 -ffast-math -march=native, optionally
// -DRL_TOOLS_BACKEND_ENABLE_MKL + MKL link flags).

#include <rl_tools/operations/cpu_mux.h>

// L2F environment (generic operations only: operations_cpu.h would pull in nlohmann/json for
// (de)serialisation, which the pip package does not ship and which training does not need)
#include <rl_tools/rl/environments/l2f/operations_generic.h>

#include <rl_tools/nn/optimizers/adam/instance/operations_generic.h>
#include <rl_tools/nn/operations_cpu_mux.h>
#include <rl_tools/nn/layers/sample_and_squash/operations_generic.h>
#include <rl_tools/nn_models/mlp/operations_generic.h>
#include <rl_tools/nn_models/sequential/operations_generic.h>
#include <rl_tools/nn_models/random_uniform/operations_generic.h>
#include <rl_tools/nn/optimizers/adam/operations_generic.h>

#include <rl_tools/rl/algorithms/sac/loop/core/config.h>
#include <rl_tools/rl/algorithms/sac/loop/core/operations_generic.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace rlt = rl_tools;

using DEVICE = rlt::devices::DEVICE_FACTORY<>;
using RNG = DEVICE::SPEC::RANDOM::ENGINE<>;
using TI = DEVICE::index_t;
using T = float;
using TYPE_POLICY = rlt::numeric_types::Policy<T>;

#ifndef HOVER_EVAL_BATCH
#define HOVER_EVAL_BATCH 32  // evaluation episodes run in lockstep per policy call
#endif
#ifndef HOVER_REPLAY_BUFFER_CAP
#define HOVER_REPLAY_BUFFER_CAP 200000  // zoo: REPLAY_BUFFER_CAP = STEP_LIMIT = 200000
#endif

// ----------------------------------------------------------------------------------------
// Environment: the zoo's L2F configuration (Crazyflie, 100 Hz, 500-step episodes, 16-step
// action history, init_90_deg, squared reward, no noise / disturbances / randomisation).
// ----------------------------------------------------------------------------------------
namespace hover_env {
    namespace l2f = rlt::rl::environments::l2f;
    namespace l2fp = rlt::rl::environments::l2f::parameters;

    constexpr TI SIMULATION_FREQUENCY = 100;  // Hz (integration dt 0.01 s, 1 substep)
    constexpr TI EPISODE_STEPS = 500;         // 5 s
    constexpr TI ACTION_HISTORY = 16;

    using REWARD = l2fp::reward_functions::Squared<T>;
    // field order: non_negative, scale, constant, termination_penalty, position, position_clip,
    // orientation, linear_velocity, angular_velocity, linear_acceleration, angular_acceleration,
    // action, d_action, position_error_integral
    constexpr REWARD reward = {false, 0.1, 1.0, 0.0, 10.0, 0.0, 2.5, 0.05, 0.0, 0.0, 0.0, 0.1, 0.0, 0.0};

    struct TRAJECTORY_OPTIONS { static constexpr bool LANGEVIN = false; };  // plain position hold
    using SPEC_BASE = l2f::ParametersBaseSpecification<T, TI, 4, REWARD>;
    using PARAMETERS = l2f::ParametersTrajectory<l2f::ParametersTrajectorySpecification<T, TI, TRAJECTORY_OPTIONS,
        l2f::ParametersDomainRandomization<l2f::ParametersDomainRandomizationSpecification<T, TI, l2f::DefaultParametersDomainRandomizationOptions,
        l2f::ParametersDisturbances<l2f::ParametersSpecification<T, TI, l2f::ParametersBase<SPEC_BASE>>>>>>>;

    constexpr typename PARAMETERS::Dynamics dynamics = l2fp::dynamics::registry<l2fp::dynamics::REGISTRY::crazyflie, SPEC_BASE>;
    constexpr typename PARAMETERS::Integration integration = {(T)1 / (T)SIMULATION_FREQUENCY};
    constexpr typename PARAMETERS::MDP::Initialization init = l2fp::init::init_90_deg<SPEC_BASE>;
    constexpr typename PARAMETERS::MDP::ObservationNoise observation_noise = {0, 0, 0, 0, 0};
    constexpr typename PARAMETERS::MDP::ActionNoise action_noise = {0};
    // enable, position 1 m, linear velocity 10 m/s, angular velocity 35 rad/s, integrals (unused)
    constexpr typename PARAMETERS::MDP::Termination termination = {true, 1, 10, 35, 10000, 50000};
    constexpr typename PARAMETERS::MDP mdp = {init, reward, observation_noise, action_noise, termination};
    constexpr typename PARAMETERS::DomainRandomization domain_randomization = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    constexpr typename PARAMETERS::Disturbances disturbances = {
        typename PARAMETERS::Disturbances::UnivariateGaussian{0, 0},  // random force
        typename PARAMETERS::Disturbances::UnivariateGaussian{0, 0}   // random torque
    };
    // unused with LANGEVIN == false (zoo values)
    constexpr typename PARAMETERS::Trajectory trajectory = {{0.5, 0.5}, typename PARAMETERS::Trajectory::Langevin{1.0, 2.0, 0.5, 0.01}};
    constexpr PARAMETERS parameter_values = {{{{dynamics, integration, mdp}, disturbances}, domain_randomization}, trajectory};

    struct STATIC_PARAMETERS {
        static constexpr TI N_SUBSTEPS = 1;
        static constexpr TI ACTION_HISTORY_LENGTH = ACTION_HISTORY;
        static constexpr TI EPISODE_STEP_LIMIT = EPISODE_STEPS;
        static constexpr TI CLOSED_FORM = false;
        using STATE_TYPE = l2f::StateTrajectory<l2f::StateSpecification<T, TI,
            l2f::StateRotorsHistory<l2f::StateRotorsHistorySpecification<T, TI, ACTION_HISTORY, CLOSED_FORM,
            l2f::StateRandomForce<l2f::StateSpecification<T, TI, l2f::StateBase<l2f::StateSpecification<T, TI>>>>>>>>;
        // actor: position, rotation matrix, linear velocity, angular velocity, action history
        using OBSERVATION_TYPE =
            l2f::observation::Position<l2f::observation::PositionSpecification<T, TI,
            l2f::observation::OrientationRotationMatrix<l2f::observation::OrientationRotationMatrixSpecification<T, TI,
            l2f::observation::LinearVelocity<l2f::observation::LinearVelocitySpecification<T, TI,
            l2f::observation::AngularVelocity<l2f::observation::AngularVelocitySpecification<T, TI,
            l2f::observation::ActionHistory<l2f::observation::ActionHistorySpecification<T, TI, ACTION_HISTORY>>>>>>>>>>;
        // critic (asymmetric): the same without history, plus random force and rotor speeds
        using OBSERVATION_TYPE_PRIVILEGED =
            l2f::observation::Position<l2f::observation::PositionSpecificationPrivileged<T, TI,
            l2f::observation::OrientationRotationMatrix<l2f::observation::OrientationRotationMatrixSpecificationPrivileged<T, TI,
            l2f::observation::LinearVelocity<l2f::observation::LinearVelocitySpecificationPrivileged<T, TI,
            l2f::observation::AngularVelocity<l2f::observation::AngularVelocitySpecificationPrivileged<T, TI,
            l2f::observation::RandomForce<l2f::observation::RandomForceSpecification<T, TI,
            l2f::observation::RotorSpeeds<l2f::observation::RotorSpeedsSpecification<T, TI>>>>>>>>>>>>;
        static constexpr bool PRIVILEGED_OBSERVATION_NOISE = false;
        using PARAMETERS = hover_env::PARAMETERS;
        static constexpr auto PARAMETER_VALUES = parameter_values;
        static constexpr T STATE_LIMIT_POSITION = 100000;
        static constexpr T STATE_LIMIT_VELOCITY = 100000;
        static constexpr T STATE_LIMIT_ANGULAR_VELOCITY = 100000;
    };
    using ENVIRONMENT = rlt::rl::environments::Multirotor<l2f::Specification<T, TI, STATIC_PARAMETERS>>;
}
using ENVIRONMENT = hover_env::ENVIRONMENT;

// ----------------------------------------------------------------------------------------
// SAC: the zoo's parameters (sac.h). Everything not set here is the RLtools default.
// ----------------------------------------------------------------------------------------
namespace sac = rlt::rl::algorithms::sac;
struct LOOP_PARAMETERS : sac::loop::core::DefaultParameters<TYPE_POLICY, TI, ENVIRONMENT> {
    struct SAC_PARAMETERS : sac::DefaultParameters<TYPE_POLICY, TI, ENVIRONMENT::ACTION_DIM> {
        static constexpr TI ACTOR_BATCH_SIZE = 64;
        static constexpr TI CRITIC_BATCH_SIZE = 64;
        static constexpr TI TRAINING_INTERVAL = 5;
        static constexpr TI CRITIC_TRAINING_INTERVAL = TRAINING_INTERVAL;       // both critics every 5 steps
        static constexpr TI ACTOR_TRAINING_INTERVAL = 2 * TRAINING_INTERVAL;    // actor (+alpha) every 10
        static constexpr TI CRITIC_TARGET_UPDATE_INTERVAL = TRAINING_INTERVAL;  // polyak every 5
        static constexpr T GAMMA = 0.99;
        static constexpr bool IGNORE_TERMINATION = false;
        static constexpr T TARGET_ENTROPY = -4;
        static constexpr TI SEQUENCE_LENGTH = 1;
        // (the zoo also sets TARGET_NEXT_ACTION_NOISE_{STD,CLIP}: TD3 fields, unused by SAC)
    };
    // the loop's own STEP_LIMIT is only a ceiling: the run stops at --max-steps
    static constexpr TI STEP_LIMIT = 100000000;
    static constexpr TI REPLAY_BUFFER_CAP = HOVER_REPLAY_BUFFER_CAP;
    static constexpr TI ACTOR_NUM_LAYERS = 3;
    static constexpr TI ACTOR_HIDDEN_DIM = 32;
    static constexpr auto ACTOR_ACTIVATION_FUNCTION = rlt::nn::activation_functions::ActivationFunction::FAST_TANH;
    static constexpr TI CRITIC_NUM_LAYERS = 3;
    static constexpr TI CRITIC_HIDDEN_DIM = 32;
    static constexpr auto CRITIC_ACTIVATION_FUNCTION = rlt::nn::activation_functions::ActivationFunction::FAST_TANH;
    static constexpr TI EPISODE_STEP_LIMIT = 500;
    static constexpr bool SAMPLE_ENVIRONMENT_PARAMETERS = true;
    struct OPTIMIZER_COMMON : rlt::nn::optimizers::adam::DEFAULT_PARAMETERS_TENSORFLOW<TYPE_POLICY> {
        static constexpr bool ENABLE_GRADIENT_CLIPPING = true;
        static constexpr T GRADIENT_CLIP_VALUE = 1;
        static constexpr bool ENABLE_WEIGHT_DECAY = true;
        static constexpr T WEIGHT_DECAY = 0.0001;
    };
    struct ACTOR_OPTIMIZER_PARAMETERS : OPTIMIZER_COMMON { static constexpr T ALPHA = 1e-3; };
    struct CRITIC_OPTIMIZER_PARAMETERS : OPTIMIZER_COMMON { static constexpr T ALPHA = 1e-3; };
    struct ALPHA_OPTIMIZER_PARAMETERS : OPTIMIZER_COMMON { static constexpr T ALPHA = 1e-3; };
};
using CONFIG = sac::loop::core::Config<TYPE_POLICY, TI, RNG, ENVIRONMENT, LOOP_PARAMETERS, sac::loop::core::ConfigApproximatorsMLP, true>;
using LOOP_STATE = CONFIG::State<CONFIG>;

// ----------------------------------------------------------------------------------------
// Hover evaluation
// ----------------------------------------------------------------------------------------
struct EvalResult {
    double success_rate = 0, mean_return = 0, mean_length = 0, share_terminated = 0;
    double mean_final_position_error = 0;
    double mean_final_position[3] = {0, 0, 0};
    // diagnostics: median over the full-length episodes of the worst position error in the
    // window, and the success rate at 2x / 4x the tolerance
    double median_window_error = -1, success_rate_2x = 0, success_rate_4x = 0;
    TI n_success = 0, n_episodes = 0;
};

struct HoverEvaluator {
    static constexpr TI B = HOVER_EVAL_BATCH;
    static constexpr TI OBS_DIM = ENVIRONMENT::Observation::DIM;
    static constexpr TI ACTION_DIM = ENVIRONMENT::ACTION_DIM;
    using ACTOR = CONFIG::NN::ACTOR_TYPE::CHANGE_BATCH_SIZE<TI, B>::CHANGE_CAPABILITY<rlt::nn::capability::Forward<true>>;
    ACTOR actor;
    ACTOR::Buffer<true> buffer;
    ACTOR::State<true> policy_state;
    rlt::Matrix<rlt::matrix::Specification<T, TI, B, OBS_DIM, true>> observations;
    rlt::Matrix<rlt::matrix::Specification<T, TI, B, ACTION_DIM, true>> actions;
    ENVIRONMENT env;
    TI steps = 500, window = 200;
    T tolerance = 0.05;
    TI seed = 10000;

    void malloc(DEVICE& device) {
        rlt::malloc(device, actor);
        rlt::malloc(device, buffer);
        rlt::malloc(device, policy_state);
        rlt::malloc(device, observations);
        rlt::malloc(device, actions);
        rlt::malloc(device, env);
        rlt::init(device, env);
    }
    void free(DEVICE& device) {
        rlt::free(device, actor);
        rlt::free(device, buffer);
        rlt::free(device, policy_state);
        rlt::free(device, observations);
        rlt::free(device, actions);
        rlt::free(device, env);
    }

    EvalResult evaluate(DEVICE& device, LOOP_STATE& ts, TI n_episodes) {
        rlt::copy(device, device, rlt::get_actor(ts), actor);
        rlt::Mode<rlt::mode::Evaluation<>> mode;  // deterministic: tanh(mean)
        RNG rng;  // same start states at every evaluation (and for every training seed)
        rlt::malloc(device, rng);
        rlt::init(device, rng, seed);
        EvalResult res;
        double sum_return = 0, sum_length = 0, sum_final_err = 0, sum_final_pos[3] = {0, 0, 0};
        TI n_terminated = 0, n_2x = 0, n_4x = 0;
        std::vector<double> window_errors;
        for (TI start = 0; start < n_episodes; start += B) {
            const TI n = (n_episodes - start < B) ? n_episodes - start : B;
            std::vector<typename ENVIRONMENT::State> states(B), next_states(B);
            std::vector<typename ENVIRONMENT::Parameters> params(B);
            std::vector<bool> done(B, false);
            std::vector<double> ret(B, 0.0), max_err_window(B, 0.0), final_err(B, 0.0);
            std::vector<std::array<double, 3>> final_pos(B, {0, 0, 0});
            std::vector<TI> length(B, 0);
            for (TI i = 0; i < B; i++) {
                std::memset(&states[i], 0, sizeof(states[i]));  // also sets trajectory.type = POSITION
                rlt::initial_parameters(device, env, params[i]);
                rlt::initial_state(device, env, params[i], states[i]);
                if (i < n) {
                    rlt::sample_initial_parameters(device, env, params[i], rng);
                    rlt::sample_initial_state(device, env, params[i], states[i], rng);
                } else {
                    done[i] = true;  // padding rows of the last batch
                }
            }
            rlt::reset(device, actor, policy_state, rng);
            auto obs_t = rlt::to_tensor(device, observations);
            auto act_t = rlt::to_tensor(device, actions);
            for (TI step_i = 0; step_i < steps; step_i++) {
                for (TI i = 0; i < B; i++) {
                    auto row = rlt::row(device, observations, i);
                    rlt::observe(device, env, params[i], states[i], typename ENVIRONMENT::Observation{}, row, rng);
                }
                rlt::evaluate_step(device, actor, obs_t, policy_state, act_t, buffer, rng, mode);
                bool any_alive = false;
                for (TI i = 0; i < n; i++) {
                    if (done[i]) continue;
                    auto action = rlt::row(device, actions, i);
                    rlt::step(device, env, params[i], states[i], action, next_states[i], rng);
                    T r = rlt::reward(device, env, params[i], states[i], action, next_states[i], rng);
                    bool term = rlt::terminated(device, env, params[i], next_states[i], rng);
                    ret[i] += r;
                    length[i] += 1;
                    const auto& p = next_states[i].position;  // hover target: origin
                    double err = std::sqrt((double)p[0] * p[0] + (double)p[1] * p[1] + (double)p[2] * p[2]);
                    final_err[i] = err;
                    final_pos[i] = {(double)p[0], (double)p[1], (double)p[2]};
                    if (step_i >= steps - window && err > max_err_window[i]) max_err_window[i] = err;
                    states[i] = next_states[i];
                    if (term) {
                        done[i] = true;
                        n_terminated++;
                    } else {
                        any_alive = true;
                    }
                }
                if (!any_alive) break;
            }
            for (TI i = 0; i < n; i++) {
                bool full = length[i] == steps;
                bool success = full && max_err_window[i] < tolerance;
                res.n_success += success ? 1 : 0;
                n_2x += (full && max_err_window[i] < 2 * tolerance) ? 1 : 0;
                n_4x += (full && max_err_window[i] < 4 * tolerance) ? 1 : 0;
                if (full) window_errors.push_back(max_err_window[i]);
                for (int d = 0; d < 3; d++) sum_final_pos[d] += final_pos[i][d];
                sum_return += ret[i];
                sum_length += length[i];
                sum_final_err += final_err[i];
            }
        }
        rlt::free(device, rng);
        res.n_episodes = n_episodes;
        res.success_rate = (double)res.n_success / n_episodes;
        res.mean_return = sum_return / n_episodes;
        res.mean_length = sum_length / n_episodes;
        res.share_terminated = (double)n_terminated / n_episodes;
        res.mean_final_position_error = sum_final_err / n_episodes;
        for (int d = 0; d < 3; d++) res.mean_final_position[d] = sum_final_pos[d] / n_episodes;
        res.success_rate_2x = (double)n_2x / n_episodes;
        res.success_rate_4x = (double)n_4x / n_episodes;
        if (!window_errors.empty()) {
            std::sort(window_errors.begin(), window_errors.end());
            size_t m = window_errors.size();
            res.median_window_error = m % 2 ? window_errors[m / 2] : 0.5 * (window_errors[m / 2 - 1] + window_errors[m / 2]);
        }
        return res;
    }
};

// ----------------------------------------------------------------------------------------
struct Args {
    long seed = 0;
    long max_steps = 300000;
    long eval_every = 10000;
    long eval_episodes = 32;
    double threshold = 0.8;
    double time_limit = 0;  // s of training (0: none)
    long eval_seed = 10000;
    double tolerance = 0.05;  // m
    long window = 200;        // steps (2 s at 100 Hz)
};

static void usage(const char* prog) {
    std::fprintf(stderr,
                 "usage: %s [--seed N] [--max-steps N] [--eval-every N] [--eval-episodes N] "
                 "[--threshold X] [--time-limit S] [--eval-seed N] [--tolerance M] [--window STEPS]\n",
                 prog);
}

static bool parse_args(int argc, char** argv, Args& a) {
    for (int i = 1; i < argc; i++) {
        std::string k = argv[i];
        if (k == "-h" || k == "--help") return false;
        if (i + 1 >= argc) return false;
        const char* v = argv[++i];
        if (k == "--seed") a.seed = std::atol(v);
        else if (k == "--max-steps") a.max_steps = std::atol(v);
        else if (k == "--eval-every") a.eval_every = std::atol(v);
        else if (k == "--eval-episodes") a.eval_episodes = std::atol(v);
        else if (k == "--threshold") a.threshold = std::atof(v);
        else if (k == "--time-limit") a.time_limit = std::atof(v);
        else if (k == "--eval-seed") a.eval_seed = std::atol(v);
        else if (k == "--tolerance") a.tolerance = std::atof(v);
        else if (k == "--window") a.window = std::atol(v);
        else return false;
    }
    return a.max_steps > 0 && a.eval_every > 0 && a.eval_episodes > 0 && a.seed >= 0 && a.tolerance > 0 &&
           a.window >= 1 && a.window <= (long)ENVIRONMENT::EPISODE_STEP_LIMIT;
}

int main(int argc, char** argv) {
    Args args;
    if (!parse_args(argc, argv, args)) {
        usage(argv[0]);
        return 2;
    }
    using clock = std::chrono::steady_clock;
    auto secs = [](clock::time_point a, clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };

    DEVICE device;
    rlt::init(device);
    auto t_alloc0 = clock::now();
    auto* ts_ptr = new LOOP_STATE;  // large: keep it off the stack
    LOOP_STATE& ts = *ts_ptr;
    rlt::malloc(device, ts);
    rlt::init(device, ts, (TI)args.seed);
    HoverEvaluator evaluator;
    evaluator.malloc(device);
    evaluator.seed = (TI)args.eval_seed;
    evaluator.tolerance = (T)args.tolerance;
    evaluator.window = (TI)args.window;
    evaluator.steps = ENVIRONMENT::EPISODE_STEP_LIMIT;
    double init_s = secs(t_alloc0, clock::now());

    const char* backend =
#if defined(RL_TOOLS_BACKEND_ENABLE_MKL)
        "mkl";
#else
        "generic";
#endif
    constexpr TI OBS = ENVIRONMENT::Observation::DIM;
    constexpr TI OBS_P = ENVIRONMENT::ObservationPrivileged::DIM;
    constexpr TI A = ENVIRONMENT::ACTION_DIM;
    constexpr TI H = 32;
    const long actor_params = (OBS * H + H) + (H * H + H) + (H * 2 * A + 2 * A);
    const long critic_params = ((OBS_P + A) * H + H) + (H * H + H) + (H + 1);
    std::printf(
        "CONFIG {\"backend\": \"%s\", \"obs_dim\": %d, \"obs_dim_privileged\": %d, \"action_dim\": %d, "
        "\"actor_params\": %ld, \"critic_params\": %ld, \"replay_buffer_cap\": %d, \"eval_batch\": %d, "
        "\"n_warmup_steps\": %d, \"n_warmup_steps_critic\": %d, \"n_warmup_steps_actor\": %d, "
        "\"alpha_init\": %g, \"polyak\": %g, \"init_s\": %.4f}\n",
        backend, (int)OBS, (int)OBS_P, (int)A, actor_params, critic_params, (int)LOOP_PARAMETERS::REPLAY_BUFFER_CAP,
        (int)HoverEvaluator::B, (int)LOOP_PARAMETERS::N_WARMUP_STEPS, (int)LOOP_PARAMETERS::N_WARMUP_STEPS_CRITIC,
        (int)LOOP_PARAMETERS::N_WARMUP_STEPS_ACTOR, (double)LOOP_PARAMETERS::SAC_PARAMETERS::ALPHA,
        (double)LOOP_PARAMETERS::SAC_PARAMETERS::ACTOR_POLYAK, init_s);
    std::fflush(stdout);

    bool solved = false;
    const char* stop_reason = "max_steps";
    double eval_s = 0, best_success = 0;
    long steps_at_solve = -1;
    double time_at_solve = -1;
    bool fixed_trajectory_type = false;
    auto t0 = clock::now();
    long step = 0;
    while (step < args.max_steps) {
        rlt::step(device, ts);
        step++;
        if (step == 1) {
            // sample_initial_state leaves StateTrajectory::trajectory.type untouched when
            // LANGEVIN is off; the runner's state buffer is malloc'd, so make sure it holds
            // POSITION (hover at the origin) rather than whatever the allocation contained.
            auto& s = rlt::get(ts.off_policy_runner.states, 0, 0);
            if (s.trajectory.type != rlt::rl::environments::l2f::POSITION) {
                s.trajectory.type = rlt::rl::environments::l2f::POSITION;
                fixed_trajectory_type = true;
            }
        }
        if (step % args.eval_every == 0 || step == args.max_steps) {
            auto te0 = clock::now();
            EvalResult r = evaluator.evaluate(device, ts, (TI)args.eval_episodes);
            auto te1 = clock::now();
            eval_s += secs(te0, te1);
            double wall = secs(t0, te1);
            if (r.success_rate > best_success) best_success = r.success_rate;
            std::printf(
                "EVAL {\"step\": %ld, \"wall_s\": %.4f, \"success_rate\": %.4f, \"mean_return\": %.4f, "
                "\"mean_length\": %.2f, \"share_terminated\": %.4f, \"mean_final_position_error\": %.5f, "
                "\"mean_final_position\": [%.5f, %.5f, %.5f], \"median_window_max_error\": %.5f, "
                "\"success_rate_2x_tol\": %.4f, \"success_rate_4x_tol\": %.4f, "
                "\"eval_s\": %.4f, \"n_success\": %d, \"n_episodes\": %d}\n",
                step, wall, r.success_rate, r.mean_return, r.mean_length, r.share_terminated,
                r.mean_final_position_error, r.mean_final_position[0], r.mean_final_position[1],
                r.mean_final_position[2], r.median_window_error, r.success_rate_2x, r.success_rate_4x,
                secs(te0, te1), (int)r.n_success, (int)r.n_episodes);
            std::fflush(stdout);
            if (r.success_rate >= args.threshold) {
                solved = true;
                stop_reason = "solved";
                steps_at_solve = step;
                time_at_solve = wall;
                break;
            }
            if (args.time_limit > 0 && wall > args.time_limit) {
                stop_reason = "time_limit";
                break;
            }
        }
    }
    double train_wall = secs(t0, clock::now());
    double train_excl = train_wall - eval_s;
    std::printf(
        "DONE {\"solved\": %s, \"stop_reason\": \"%s\", \"steps\": %ld, \"steps_to_hover\": %ld, "
        "\"time_to_hover_s\": %.4f, \"train_wall_s\": %.4f, \"eval_s\": %.4f, \"train_excl_eval_s\": %.4f, "
        "\"steps_per_s\": %.1f, \"best_success_rate\": %.4f, \"fixed_trajectory_type\": %s}\n",
        solved ? "true" : "false", stop_reason, step, steps_at_solve, time_at_solve, train_wall, eval_s, train_excl,
        train_excl > 0 ? step / train_excl : 0.0, best_success, fixed_trajectory_type ? "true" : "false");
    std::fflush(stdout);

    evaluator.free(device);
    rlt::free(device, ts);
    delete ts_ptr;
    return 0;
}
