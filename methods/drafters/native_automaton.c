/* The suffix automaton of a token sequence, built over flat arrays (methods/drafters/native_automaton.py).
 *
 * The same online construction as suffix_automaton.py's SuffixAutomaton.append (Blumer et al.,
 * 1985), step for step, so states get the same numbers and the frozen arrays are identical. What
 * differs is the storage: Python keeps a dict of edges per state (about 600 bytes a state); here a
 * state's edges are a linked list through flat arrays (to copy them into a clone) and one
 * open-addressing hash table maps (state, token) to an edge (to follow or redirect one). A text
 * of n tokens has at most 2n states and 3n edges, so the caller allocates everything up front. */
#include <stdint.h>

int sam_builder_version(void) { return 2; }

static inline uint64_t slot_of(int32_t state, int32_t token, uint64_t mask) {
    uint64_t h = ((uint64_t)(uint32_t)state << 32) | (uint32_t)token;
    h ^= h >> 33;  /* a 64-bit finaliser: consecutive states and tokens land far apart */
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h & mask;
}

typedef struct {
    int32_t *src, *tok, *target, *next, *head, *table;
    uint64_t mask;
    int64_t n_edges, cap;
} edges_t;

/* The edge of ``state`` labelled ``token``, or -1. The table is never full (load <= 1/2). */
static int64_t find_edge(const edges_t *E, int32_t state, int32_t token) {
    uint64_t i = slot_of(state, token, E->mask);
    for (;;) {
        int32_t e = E->table[i];
        if (e < 0) return -1;
        if (E->src[e] == state && E->tok[e] == token) return e;
        i = (i + 1) & E->mask;
    }
}

/* Adds the edge (which must be absent); 0, or -1 when the edge arrays are full. */
static int add_edge(edges_t *E, int32_t state, int32_t token, int32_t target) {
    if (E->n_edges >= E->cap) return -1;
    int32_t e = (int32_t)E->n_edges++;
    E->src[e] = state;
    E->tok[e] = token;
    E->target[e] = target;
    E->next[e] = E->head[state];
    E->head[state] = e;
    uint64_t i = slot_of(state, token, E->mask);
    while (E->table[i] >= 0) i = (i + 1) & E->mask;
    E->table[i] = e;
    return 0;
}

/* Builds the automaton of tokens[0..n). Arrays of states_cap entries: link, length, first_end,
 * head; of edges_cap entries: edge_src, edge_tok, edge_target, edge_next; table: table_size
 * entries, a power of two above 2 * edges_cap. counts receives (states, edges). Returns 0, or -1
 * when a capacity was too small (nothing else is then meaningful). */
int sam_build(int64_t n, const int32_t *tokens, int64_t states_cap, int64_t edges_cap, int64_t table_size,
              int32_t *link, int32_t *length, int64_t *first_end, int32_t *head,
              int32_t *edge_src, int32_t *edge_tok, int32_t *edge_target, int32_t *edge_next,
              int32_t *table, int64_t *counts) {
    edges_t E = {edge_src, edge_tok, edge_target, edge_next, head, table, (uint64_t)table_size - 1, 0, edges_cap};
    for (int64_t i = 0; i < table_size; i++) table[i] = -1;
    if (states_cap < 1) return -1;
    int64_t n_states = 1;
    link[0] = -1;
    length[0] = 0;
    first_end[0] = -1;
    head[0] = -1;
    int32_t last = 0;
    for (int64_t pos = 0; pos < n; pos++) {
        int32_t c = tokens[pos];
        if (n_states + 2 > states_cap) return -1;
        int32_t cur = (int32_t)n_states++;
        link[cur] = 0;
        length[cur] = length[last] + 1;
        first_end[cur] = pos;
        head[cur] = -1;
        int32_t p = last;
        while (p != -1 && find_edge(&E, p, c) < 0) {
            if (add_edge(&E, p, c, cur)) return -1;
            p = link[p];
        }
        if (p != -1) {
            int32_t q = edge_target[find_edge(&E, p, c)];
            if (length[p] + 1 == length[q]) {
                link[cur] = q;
            } else {
                /* q also holds longer strings that do not end here: split off the short ones. */
                int32_t clone = (int32_t)n_states++;
                head[clone] = -1;
                link[clone] = link[q];
                length[clone] = length[p] + 1;
                first_end[clone] = first_end[q];
                for (int32_t f = head[q]; f >= 0; f = edge_next[f])
                    if (add_edge(&E, clone, edge_tok[f], edge_target[f])) return -1;
                while (p != -1) {
                    int64_t e = find_edge(&E, p, c);
                    if (e < 0 || edge_target[e] != q) break;
                    edge_target[e] = clone;
                    p = link[p];
                }
                link[q] = clone;
                link[cur] = clone;
            }
        }
        last = cur;
    }
    counts[0] = n_states;
    counts[1] = E.n_edges;
    return 0;
}

/* The states by descending length, ties by ascending number (a counting sort; bucket is scratch
 * of max_length + 2 entries): the order in which pushing a value up the suffix links settles each
 * state before it is pushed, since a link is always shorter. */
static void longest_first(int64_t n_states, const int32_t *length, int32_t *order, int64_t *bucket,
                          int64_t max_length) {
    for (int64_t l = 0; l <= max_length + 1; l++) bucket[l] = 0;
    for (int64_t s = 0; s < n_states; s++) bucket[max_length - length[s] + 1]++;
    for (int64_t l = 1; l <= max_length + 1; l++) bucket[l] += bucket[l - 1];
    for (int64_t s = 0; s < n_states; s++) order[bucket[max_length - length[s]]++] = (int32_t)s;
}

/* Per state, the end position followed by the most tokens before its document's separator
 * (suffix_automaton.py's _longest_continuation_ends, whose Python loop is the reference). best
 * holds on entry each appended state's own end position and -1 elsewhere; left[pos] is the number
 * of tokens after pos in its document. Each state, longest first, offers its best to its suffix
 * link; a strictly longer continuation wins, so ties keep the first offer. */
void sam_continuation_ends(int64_t n_states, const int32_t *length, const int32_t *link, const int64_t *left,
                           int64_t *best, int32_t *order, int64_t *bucket, int64_t max_length) {
    longest_first(n_states, length, order, bucket, max_length);
    for (int64_t i = 0; i < n_states; i++) {
        int32_t s = order[i];
        int32_t parent = link[s];
        int64_t mine = best[s];
        if (parent <= 0 || mine < 0) continue;
        int64_t theirs = best[parent];
        if (theirs < 0 || left[mine] > left[theirs]) best[parent] = mine;
    }
}

/* Per state, its number of end positions (suffix_index.py's _occurrence_counts): occ holds on
 * entry 1 for each appended state and 0 elsewhere; each state but the root, longest first, adds
 * its count to its suffix link's. */
void sam_occurrence_counts(int64_t n_states, const int32_t *length, const int32_t *link, int64_t *occ,
                           int32_t *order, int64_t *bucket, int64_t max_length) {
    longest_first(n_states, length, order, bucket, max_length);
    for (int64_t i = 0; i < n_states; i++) {
        int32_t s = order[i];
        if (link[s] >= 0) occ[link[s]] += occ[s];  /* the root (link -1) ends up counting every position */
    }
}
