/* A tiny sudo for the xen-vhd-tempest lab guest.
 *
 * Installed root:sudo mode 4750, so only members of group "sudo" (cirros) can
 * run it; it becomes root and runs the command (or a shell). Accepts and ignores
 * the usual harmless options (-n -E -H -S -k, -u root); -i / -s give a shell.
 */
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int i = 1, login = 0;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--") == 0) { i++; break; }
        if (strcmp(argv[i], "-u") == 0) {
            if (i + 1 >= argc || (strcmp(argv[i + 1], "root") && strcmp(argv[i + 1], "0"))) {
                fprintf(stderr, "sudo: only -u root is supported\n");
                return 1;
            }
            i++;
            continue;
        }
        if (strcmp(argv[i], "-i") == 0 || strcmp(argv[i], "-s") == 0) { login = 1; continue; }
        if (strcmp(argv[i], "-n") == 0 || strcmp(argv[i], "-E") == 0 || strcmp(argv[i], "-H") == 0 ||
            strcmp(argv[i], "-S") == 0 || strcmp(argv[i], "-k") == 0) continue;
        fprintf(stderr, "sudo: unsupported option %s\n", argv[i]);
        return 1;
    }
    if (setgroups(0, NULL) != 0 || setgid(0) != 0 || setuid(0) != 0) {
        perror("sudo: cannot become root");
        return 1;
    }
    setenv("PATH", "/bin:/sbin:/usr/bin:/usr/sbin", 1);
    setenv("HOME", "/root", 1);
    setenv("USER", "root", 1);
    setenv("LOGNAME", "root", 1);
    if (i >= argc) {
        char *sh[] = {login ? "-sh" : "sh", NULL};
        execv("/bin/sh", sh);
        perror("sudo: /bin/sh");
        return 127;
    }
    if (login) {
        /* sudo -i CMD ARGS: run through the shell like real sudo does. */
        char *sh[] = {"sh", "-c", NULL, NULL};
        size_t len = 1;
        for (int j = i; j < argc; j++) len += strlen(argv[j]) + 1;
        char *cmd = calloc(len, 1);
        for (int j = i; j < argc; j++) { strcat(cmd, argv[j]); if (j + 1 < argc) strcat(cmd, " "); }
        sh[2] = cmd;
        execv("/bin/sh", sh);
        perror("sudo: /bin/sh");
        return 127;
    }
    execvp(argv[i], argv + i);
    fprintf(stderr, "sudo: %s: command not found\n", argv[i]);
    return 127;
}
