# fish completion for lanco. The candidates come from `lanco __complete`,
# which reads lanco's own option definitions and the names the caller may
# see (namespaces, task names, definitions); it prints no errors.
function __lanco_complete
    set -l words (commandline -opc)
    set -l cur (commandline -ct)
    set -l out (command lanco __complete (count $words) $words $cur 2>/dev/null)
    switch "$out[1]"
        case :files
            __fish_complete_path $cur
        case :dirs
            __fish_complete_directories $cur
        case :commands
            __fish_complete_command
        case '*'
            printf '%s\n' $out
    end
end

complete -c lanco -f -a '(__lanco_complete)'
