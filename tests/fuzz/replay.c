/*
 * Runs a fuzz target's LLVMFuzzerTestOneInput over saved inputs, so the
 * corpus and any crash reproducer are checked by every compiler and in every
 * build, not only where libFuzzer exists.
 *
 * Usage: <target>_replay [FILE|DIR]...
 * The seed corpus compiled in as NQ_FUZZ_CORPUS is always replayed first;
 * a directory's files run in name order.  Exits 1 when an input cannot be
 * read or the seed corpus is empty; a broken invariant aborts.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef NQ_FUZZ_CORPUS
#error "NQ_FUZZ_CORPUS must name the seed corpus directory"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads a whole file into a malloc'd buffer the caller frees. */
static int read_file(const char *path, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    uint8_t *buf = NULL;
    size_t have = 0;
    size_t cap = 0;
    for (;;) {
        if (have == cap) {
            size_t ncap = cap == 0 ? 4096 : cap * 2;
            uint8_t *nb = realloc(buf, ncap);
            if (nb == NULL) {
                fprintf(stderr, "replay: out of memory reading %s\n", path);
                free(buf);
                fclose(f);
                return -1;
            }
            buf = nb;
            cap = ncap;
        }
        size_t n = fread(buf + have, 1, cap - have, f);
        have += n;
        if (n == 0) {
            break;
        }
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        free(buf);
        return -1;
    }
    *out = buf;
    *len = have;
    return 0;
}

static int run_file(const char *path)
{
    uint8_t *data;
    size_t len;
    if (read_file(path, &data, &len) != 0) {
        return -1;
    }
    LLVMFuzzerTestOneInput(data, len);
    free(data);
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file in dir; stores how many ran in *count. */
static int run_dir(const char *dir, size_t *count)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "replay: cannot open directory %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0;
    size_t cap = 0;
    int rv = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        if (ent->d_name[0] == '.') {
            continue;
        }
        if (n == cap) {
            size_t ncap = cap == 0 ? 64 : cap * 2;
            char **nn = realloc(names, ncap * sizeof(*names));
            if (nn == NULL) {
                rv = -1;
                break;
            }
            names = nn;
            cap = ncap;
        }
        size_t size = strlen(dir) + 1 + strlen(ent->d_name) + 1;
        if ((names[n] = malloc(size)) == NULL) {
            rv = -1;
            break;
        }
        snprintf(names[n], size, "%s/%s", dir, ent->d_name);
        n++;
    }
    closedir(d);
    if (rv != 0) {
        fprintf(stderr, "replay: out of memory listing %s\n", dir);
    }
    if (n > 0) {
        qsort(names, n, sizeof(*names), compare_names);
    }
    *count = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (rv == 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            if (run_file(names[i]) != 0) {
                rv = -1;
            } else {
                (*count)++;
            }
        }
        free(names[i]);
    }
    free(names);
    return rv;
}

static int run_path(const char *path, size_t *count)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        return run_dir(path, count);
    }
    *count = 1;
    return run_file(path);
}

int main(int argc, char **argv)
{
    size_t seeds = 0;
    if (run_dir(NQ_FUZZ_CORPUS, &seeds) != 0) {
        return 1;
    }
    if (seeds == 0) {
        fprintf(stderr, "replay: the seed corpus %s is empty\n", NQ_FUZZ_CORPUS);
        return 1;
    }
    size_t total = seeds;
    for (int i = 1; i < argc; i++) {
        size_t n = 0;
        if (run_path(argv[i], &n) != 0) {
            return 1;
        }
        total += n;
    }
    printf("replay: %zu inputs passed (%zu seeds)\n", total, seeds);
    return 0;
}
