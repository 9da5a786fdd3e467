/* Runs the fuzz target over files and directories of inputs, so gcc builds
 * (with sanitizers, in `make test-c`) replay the committed corpus without
 * libFuzzer. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return perror(path), 1;
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    return 0;
}

int main(int argc, char **argv)
{
    int inputs = 0, errors = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) < 0)
            return perror(argv[i]), 1;
        if (!S_ISDIR(st.st_mode)) {
            errors += replay_file(argv[i]), inputs++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        for (struct dirent *de; d && (de = readdir(d));) {
            if (de->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], de->d_name);
            errors += replay_file(path), inputs++;
        }
        if (d)
            closedir(d);
    }
    printf("fuzz replay: %d inputs, %s\n", inputs, errors ? "unreadable files" : "no invariant broken");
    return errors != 0;
}
