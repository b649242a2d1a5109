#!/usr/bin/env python3
"""Seeds for the text targets: loader configs (netboot), boot request
paths and Range headers (boot_path).

Usage: text_seeds.py REPO OUT_DIR

netboot/: the configs the agent serves, in the exact layout of
src/boot/render.rs (PXELINUX, GRUB, iPXE, boot.ipxe, the built-in
defaults), the config files Ironic's own templates render, and render-half
inputs (fields separated by 0x1e: kernel, ramdisk, node parameters, global
parameters, API URL, HTTP boot URL, boot mode) taken from the values the
tests and the demo use.

boot_path/: the file names PXE ROMs, PXELINUX, GRUB and iPXE request
(and what tests/boot_agent.rs sends to test traversal), and Range headers
as curl and the tests send them.
"""
import os
import sys

REPO, OUT = sys.argv[1], sys.argv[2]
MAC = "52:54:00:12:34:56"
DASH = MAC.replace(":", "-")
UUID = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123"
ARGS = ("nofb nomodeset vga=normal ipa-debug=1 ipa-api-url=http://10.0.0.1:6385 "
        "ipa-node-uuid=%s BOOTIF=01-%s" % (UUID, DASH))


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


# --- what src/boot/render.rs renders (same format strings) ----------------
def pxelinux(k, r, a):
    return "default deploy\n\nlabel deploy\nkernel %s\nappend initrd=%s %s\n" % (k, r, a)


def grub(k, r, a):
    return ("set default=deploy\nset timeout=5\n\nmenuentry \"deploy\" {\n    "
            "linux %s %s\n    initrd %s\n}\n" % (k, a, r))


def ipxe(k, r, a):
    return ("#!ipxe\n\nset attempts:int32 10\nset i:int32 0\n\n:deploy\nimgfree\n"
            "kernel %s %s initrd=deploy_ramdisk || goto retry\n"
            "initrd --name deploy_ramdisk %s || goto retry\nboot\n\n:retry\n"
            "iseq ${i} ${attempts} && goto fail ||\ninc i\n"
            "echo Failed to download the deploy kernel or ramdisk, retrying in 5 seconds\n"
            "sleep 5\ngoto deploy\n\n:fail\n"
            "echo Failed to download the deploy kernel or ramdisk ${attempts} times, powering off\n"
            "sleep 30\npoweroff\n" % (k, a, r))


write("netboot", "render-pxelinux-root", pxelinux("deploy/vmlinuz", "deploy/initrd", ARGS))
write("netboot", "render-pxelinux-http", pxelinux("http://10.0.0.1:8080/deploy/vmlinuz",
                                                  "http://10.0.0.1:8080/deploy/initrd", ARGS))
write("netboot", "render-grub-root", grub("deploy/vmlinuz", "deploy/initrd", ARGS))
write("netboot", "render-grub-http", grub("(http,10.0.0.1:8080)/deploy/vmlinuz",
                                          "(http,10.0.0.1:8080)/deploy/initrd", ARGS))
write("netboot", "render-ipxe-http", ipxe("http://10.0.0.1:8080/deploy/vmlinuz",
                                          "http://10.0.0.1:8080/deploy/initrd", ARGS))
write("netboot", "render-ipxe-root", ipxe("/deploy/vmlinuz", "/deploy/initrd", ARGS))
write("netboot", "boot-ipxe", "#!ipxe\n\nchain http://10.0.0.1:8080/ipxe/${mac}.ipxe || goto local\n\n"
      ":local\necho No boot script for ${mac}, booting from the local disk\n"
      "sanboot --no-describe --drive 0x80 || exit\n")
write("netboot", "default-pxelinux", "default local\n\nlabel local\nlocalboot 0\n")
write("netboot", "default-grub", "set default=local\nset timeout=0\n\nmenuentry \"local\" {\n    exit\n}\n")
write("netboot", "default-ipxe", "#!ipxe\n\nsanboot --no-describe --drive 0x80 || exit\n")

# --- what Ironic's templates render (ironic/drivers/modules/*.template) ---
write("netboot", "ironic-pxe-config", (
    "default deploy\n\nlabel deploy\nkernel /tftpboot/%s/deploy_kernel\n"
    "append initrd=/tftpboot/%s/deploy_ramdisk selinux=0 troubleshoot=0 text nofb nomodeset "
    "vga=normal ipa-api-url=http://10.0.0.1:6385 coreos.configdrive=0\nipappend 2\n\n\n"
    "label boot_partition\nkernel :kernel:\nappend initrd=:ramdisk: root={{ ROOT }} ro text\n\n\n"
    "label boot_whole_disk\nCOM32 chain.c32\nappend mbr:{{ DISK_IDENTIFIER }}\n\n"
    "label trusted_boot\nkernel mboot\nappend tboot.gz --- /tftpboot/kernel intel_iommu=on --- "
    "/tftpboot/ramdisk\n") % (UUID, UUID))
write("netboot", "ironic-grub-config", (
    "set default=deploy\nset timeout=5\nset hidden_timeout_quiet=false\n\n"
    "menuentry \"deploy\"  {\n    linuxefi /tftpboot/%s/deploy_kernel selinux=0 troubleshoot=0 "
    "text ipa-api-url=http://10.0.0.1:6385 boot_server=10.0.0.1 BOOTIF=${mac}\n"
    "    initrdefi /tftpboot/%s/deploy_ramdisk\n}\n\n"
    "menuentry \"boot_ramdisk\"  {\n    linuxefi /tftpboot/%s/kernel root=/dev/ram0 text\n"
    "    initrdefi /tftpboot/%s/ramdisk\n}\n\n"
    "menuentry \"boot_whole_disk\"  {\n    linuxefi chain.c32 mbr:(( DISK_IDENTIFIER ))\n}\n")
    % (UUID, UUID, UUID, UUID))
write("netboot", "ironic-ipxe-config", (
    "#!ipxe\n\nset attempts:int32 10\nset i:int32 0\n\ngoto deploy\n\n:deploy\nimgfree\n"
    "kernel http://10.0.0.1:8080/%s/deploy_kernel selinux=0 troubleshoot=0 text "
    "ipa-api-url=http://10.0.0.1:6385 BOOTIF=${mac} initrd=deploy_ramdisk || goto retry\n\n"
    "initrd --name deploy_ramdisk http://10.0.0.1:8080/%s/deploy_ramdisk || goto retry\nboot\n\n"
    ":retry\niseq ${i} ${attempts} && goto fail ||\ninc i\necho No response, retrying in ${i} seconds.\n"
    "sleep ${i}\ngoto deploy\n\n:fail\necho Failed to get a response after ${attempts} attempts\n"
    "echo Powering off in 30 seconds.\nsleep 30\npoweroff\n") % (UUID, UUID))
write("netboot", "ironic-boot-ipxe", (
    "#!ipxe\n\n# NOTE(lucasagomes): Loop over all network devices and boot from\n"
    "# the first one capable of booting. For more information see:\n"
    "# https://bugs.launchpad.net/ironic/+bug/1504482\nset netid:int32 -1\n:loop\n"
    "inc netid || chain pxelinux.cfg/${mac:hexhyp} || goto old_rom\n"
    "isset ${net${netid}/mac} || goto loop_done\necho Attempting to boot from MAC ${net${netid}/mac:hexhyp}\n"
    "chain pxelinux.cfg/${net${netid}/mac:hexhyp} || goto loop\n\n:loop_done\n"
    "echo PXE boot failed! No configuration found for any of the present NICs.\n"
    "echo Press any key to reboot...\nprompt --timeout 180\nreboot\n\n:old_rom\n"
    "chain pxelinux.cfg/${mac:hexhyp}\n"))

# --- render-half inputs (fields separated by 0x1e) -------------------------
SEP = "\x1e"
for name, fields in {
    "fields-root-uefi": ["deploy/vmlinuz", "deploy/initrd", "%default% ipa-debug=1",
                         "nofb nomodeset vga=normal", "http://10.0.0.1:6385", "", "uefi"],
    "fields-root-bios": ["deploy/vmlinuz", "deploy/initrd", "console=ttyS0,115200n8",
                         "nofb nomodeset vga=normal", "http://10.0.0.1:6385/", "", "bios"],
    "fields-http-uefi": ["http://10.0.0.1:8080/deploy/vmlinuz", "https://images.example/initrd",
                         "", "", "https://[fd00::1]:6385", "http://10.0.0.1:8080", "uefi"],
    "fields-http-bios": ["/srv/tftp/deploy/vmlinuz", "deploy/initrd.img", "%default%",
                         "ipa-insecure=1", "http://agent.example:6385", "http://10.0.0.1:8080/", "bios"],
}.items():
    write("netboot", name, SEP.join(fields))

# --- boot_path: names loaders ask for, traversal probes, Range headers ----
paths = [
    "pxelinux.0", "lpxelinux.0", "ldlinux.c32", "/pxelinux.0", "/srv/tftp/pxelinux.0",
    "pxelinux.cfg/01-%s" % DASH, "pxelinux.cfg/default", "pxelinux.cfg/C0A8010A",
    "pxelinux.cfg/%s" % UUID, "grub/grub.cfg-01-%s" % DASH, "grub/grub.cfg", "grubx64.efi",
    "grub/x86_64-efi/command.lst", "ipxe/%s.ipxe" % MAC, "ipxe/%s.ipxe" % DASH,
    "ipxe/default.ipxe", "boot.ipxe", "ipxe.efi", "snponly.efi", "undionly.kpxe",
    "deploy/vmlinuz", "deploy\\initrd", "EFI/BOOT/BOOTX64.EFI",
    # tests/boot_agent.rs traversal probes (decoded and encoded)
    "../etc/passwd", "/../../etc/passwd", "..%2f..%2fetc%2fpasswd", "%2e%2e/%2e%2e/etc/passwd",
    "deploy%5c..%5c..%5cetc%5cpasswd", "deploy/%00vmlinuz", "a/./b//c", "link-out/secret",
]
for i, p in enumerate(paths):
    write("boot_path", "path-%02d" % i, p)
for i, r in enumerate(["bytes=0-99", "bytes=100-", "bytes=-100", "bytes=0-0", "bytes=5-1",
                       "bytes=0-99,200-299", "bytes=999999999999-", "items=0-1", "bytes= 10 - 20 "]):
    write("boot_path", "range-%02d" % i, r)

# --- hw_profile: the shipped profiles ------------------------------------
d = os.path.join(REPO, "hw-profiles")
for f in sorted(os.listdir(d)):
    if f.endswith(".toml"):
        write("hw_profile", f, open(os.path.join(d, f), "rb").read())
print("text seeds written")
