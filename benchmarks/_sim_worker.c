/* The stand-in worker of bench_scale, compiled: the same events as _sim_worker.py (see there)
 * at a fraction of an interpreter's start-up cost, so that simulating 1,024 ranks on two cores
 * measures the launcher rather than 1,024 Python start-ups. bench_scale compiles it with the
 * system's cc when there is one, else uses _sim_worker.py. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec + tv.tv_usec / 1e6;
}

static long env_long(const char *name, long fallback) {
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : fallback;
}

int main(void) {
    long rank = env_long("RANK_ID", 0), world = env_long("RANK_SIZE", 1);
    long steps = env_long("SIM_STEPS", 10);
    const char *s = getenv("SIM_STEP_S");
    double step_s = s && *s ? strtod(s, NULL) : 0.5;
    printf("@wrn {\"v\":1,\"event\":\"start\",\"rank\":%ld,\"time\":%.3f,\"world_size\":%ld,"
           "\"model\":\"sim\",\"params\":1,\"steps_per_epoch\":%ld,\"epochs\":1,\"batch_size\":1,"
           "\"device_target\":\"CPU\",\"host\":\"sim\",\"pid\":%ld}\n",
           rank, now(), world, steps, (long)getpid());
    fflush(stdout);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long step = 1; step <= steps; step++) {
        double at = t0.tv_sec + t0.tv_nsec / 1e9 + step * step_s;
        struct timespec until = {(time_t)at, (long)((at - (time_t)at) * 1e9)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) != 0) {}
        printf("@wrn {\"v\":1,\"event\":\"step\",\"rank\":%ld,\"time\":%.3f,\"epoch\":1,\"step\":%ld,"
               "\"global_step\":%ld,\"loss\":%.4f,\"lr\":0.1,\"imgs_per_s\":10.0,\"data_wait_s\":0.0}\n",
               rank, now(), step, step, 1.0 / step);
        fflush(stdout);
    }
    printf("@wrn {\"v\":1,\"event\":\"epoch_end\",\"rank\":%ld,\"time\":%.3f,\"epoch\":1,\"loss\":0.1,"
           "\"seconds\":%g,\"imgs_per_s\":10.0}\n", rank, now(), steps * step_s);
    printf("@wrn {\"v\":1,\"event\":\"finish\",\"rank\":%ld,\"time\":%.3f,\"status\":\"ok\","
           "\"checksum\":\"sim\",\"seconds\":%g,\"top1\":null,\"global_step\":%ld}\n",
           rank, now(), steps * step_s, steps);
    fflush(stdout);
    return 0;
}
