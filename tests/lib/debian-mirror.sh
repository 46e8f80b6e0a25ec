# Sourced by the test stages that debootstrap a Debian rootfs
# (tests/nspawn/run.sh, tests/vm/run.sh). Needs $SUITE (the release they
# debootstrap) set by the caller.
#
# The Debian mirror the host's apt uses, from its deb822 .sources files and
# one-line .list files, or $LANCO_DEBIAN_MIRROR. An enabled "deb" entry with
# an http, https or file URI whose suite is $SUITE wins; else one whose suite
# is another Debian release name. No mirror is named here: a machine whose apt
# has none must say which one to use.
debian_mirror() {
    if [ -n "${LANCO_DEBIAN_MIRROR:-}" ]; then echo "$LANCO_DEBIAN_MIRROR"; return 0; fi
    local files=() f m
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    [ ${#files[@]} -gt 0 ] && m=$(awk -v suite="$SUITE" '
        # rank: 0 = the suite we debootstrap, 1 = another Debian release.
        function rank(suites,   s, n, i, r) {
            n = split(suites, s, " "); r = 9
            for (i = 1; i <= n; i++) {
                if (s[i] == suite) return 0
                if (s[i] ~ /^(buster|bullseye|bookworm|trixie|forky|duke|sid|oldoldstable|oldstable|stable|testing|unstable)$/) r = 1
            }
            return r
        }
        function consider(types, uris, suites, enabled,   u, r) {
            if (tolower(enabled) == "no" || (" " types " ") !~ / deb /) return
            split(uris, u, " ")
            if (u[1] !~ /^(https?|file):\/\//) return
            r = rank(suites)
            if (r < 9) print r, ++seq, u[1]
        }
        function flush() {
            if (uris != "") consider(types, uris, suites, enabled)
            types = uris = suites = enabled = ""
        }
        FNR == 1 { flush() }
        FILENAME ~ /\.sources$/ {            # deb822: stanzas of "Key: value" lines
            if ($0 ~ /^[ \t]*$/) { flush(); next }
            if ($0 ~ /^#/ || $0 ~ /^[ \t]/) next   # comments, continuation lines
            if (match($0, /^[A-Za-z][A-Za-z0-9-]*:/)) {
                k = tolower(substr($0, 1, RLENGTH - 1)); v = substr($0, RLENGTH + 1)
                gsub(/^[ \t]+|[ \t]+$/, "", v)
                if (k == "types") types = v; else if (k == "uris") uris = v
                else if (k == "suites") suites = v; else if (k == "enabled") enabled = v
            }
            next
        }
        {                                    # one-line: deb [ options ] URI SUITE COMPONENT...
            sub(/#.*/, "")
            if ($1 != "deb") next
            i = 2
            if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
            consider("deb", $i, $(i + 1), "")
        }
        END { flush() }' "${files[@]}" | sort -n -k1,1 -k2,2 | head -n 1 | cut -d' ' -f3)
    if [ -z "$m" ]; then
        echo "${0##*/}: no Debian mirror for $SUITE in the host's apt sources" \
            "(/etc/apt/sources.list, /etc/apt/sources.list.d/*.list, *.sources);" \
            "set LANCO_DEBIAN_MIRROR to the URL of a Debian archive that has $SUITE" >&2
        return 1
    fi
    echo "$m"
}
