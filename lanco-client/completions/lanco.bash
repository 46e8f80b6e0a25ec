# bash completion for lanco. The candidates come from `lanco __complete`,
# which reads lanco's own option definitions and the names the caller may
# see (namespaces, task names, definitions); it prints no errors.
_lanco() {
    local cur=${COMP_WORDS[COMP_CWORD]} line
    local -a out
    COMPREPLY=()
    mapfile -t out < <(command lanco __complete "$COMP_CWORD" "${COMP_WORDS[@]}" 2>/dev/null)
    case ${out[0]-} in
    :files)
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        ;;
    :dirs)
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen -d -- "$cur")
        ;;
    :commands)
        mapfile -t COMPREPLY < <(compgen -c -- "$cur")
        ;;
    *)
        for line in "${out[@]}"; do
            COMPREPLY+=("${line%%$'\t'*}")
        done
        ;;
    esac
}
complete -F _lanco lanco
