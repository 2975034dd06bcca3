/*
 * xcopy-bench: copies a range of one iSCSI LUN to another place on the same LUN, either with
 * EXTENDED COPY (the target copies; only parameter lists cross the network) or with READ (16) /
 * WRITE (16) by the initiator (every byte crosses the network twice), and can fill and verify.
 *
 *   xcopy-bench fill   URL SRC_LBA BLOCKS           writes a pattern stamped with each block's LBA
 *   xcopy-bench xcopy  URL SRC_LBA DST_LBA BLOCKS   EXTENDED COPY (LID1), 16 segments of 16 MiB per command
 *   xcopy-bench rw     URL SRC_LBA DST_LBA BLOCKS   READ (16) then WRITE (16), 8 MiB per command
 *   xcopy-bench verify URL SRC_LBA DST_LBA BLOCKS   the destination holds the source's pattern
 *   Last line: "MODE bytes B seconds S mibps M wire_bytes W commands C"  (wire_bytes: SCSI data
 *   the initiator sent and received, not counting PDU headers)
 *
 * Build: gcc -O2 -Wall -o xcopy-bench xcopy-bench.c -liscsi   (Debian package libiscsi-dev)
 */
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RW_BYTES (8u << 20)      /* the target's largest READ/WRITE (MaxTransferBytes) */
#define SEGMENTS 16              /* 16 x 16 MiB = 256 MiB, the target's MaxCopyBytes per command */
#define SEGMENT_BYTES (16u << 20) /* a segment counts at most 65,535 blocks */

static struct iscsi_context *iscsi;
static int lun;
static uint32_t block_size;
static unsigned long long wire_bytes, commands;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    fprintf(stderr, "%s: %s\n", what, iscsi_get_error(iscsi));
    exit(1);
}

static void check(struct scsi_task *task, const char *what) {
    if (task == NULL || task->status != SCSI_STATUS_GOOD) {
        if (task && task->status == SCSI_STATUS_CHECK_CONDITION)
            fprintf(stderr, "%s: sense %s (%x/%x)\n", what, scsi_sense_key_str(task->sense.key),
                    task->sense.ascq >> 8, task->sense.ascq & 0xff);
        die(what);
    }
    commands++;
}

/* Every block starts with its own LBA, so a block copied to the wrong place or not at all shows. */
static void stamp(unsigned char *buf, uint64_t lba, uint32_t blocks) {
    for (uint32_t i = 0; i < blocks; i++) {
        unsigned char *b = buf + (size_t)i * block_size;
        uint64_t v = lba + i;
        memcpy(b, &v, sizeof v);
        memset(b + sizeof v, (int)((lba + i) * 131 % 251) + 1, block_size - sizeof v);
    }
}

static void put16(unsigned char *p, uint16_t v) { p[0] = v >> 8; p[1] = v; }
static void put32(unsigned char *p, uint32_t v) { put16(p, v >> 16); put16(p + 2, v); }
static void put64(unsigned char *p, uint64_t v) { put32(p, v >> 32); put32(p + 4, v); }

/* The LUN's NAA designator from the Device Identification page, as the CSCD descriptor names it. */
static void naa_designator(unsigned char out[20], int *length) {
    struct scsi_task *task = iscsi_inquiry_sync(iscsi, lun, 1, SCSI_INQUIRY_PAGECODE_DEVICE_IDENTIFICATION, 255);
    check(task, "inquiry 83h");
    struct scsi_inquiry_device_identification *id = scsi_datain_unmarshall(task);
    for (struct scsi_inquiry_device_designator *d = id ? id->designators : NULL; d; d = d->next) {
        if (d->designator_type == SCSI_DESIGNATOR_TYPE_NAA && d->designator_length <= 20) {
            memcpy(out, d->designator, d->designator_length);
            *length = d->designator_length;
            return;
        }
    }
    fprintf(stderr, "no NAA designator on the Device Identification page\n");
    exit(1);
}

static void do_xcopy(uint64_t src, uint64_t dst, uint64_t blocks) {
    unsigned char naa[20];
    int naa_length;
    naa_designator(naa, &naa_length);
    uint32_t per_segment = SEGMENT_BYTES / block_size;
    unsigned char list[16 + 32 + SEGMENTS * 28];
    for (uint64_t done = 0; done < blocks;) {
        memset(list, 0, sizeof list);
        unsigned char *t = list + 16;
        t[0] = 0xE4;                       /* identification CSCD descriptor */
        t[4] = 0x01;                       /* code set binary */
        t[5] = 0x03;                       /* association LU, designator type NAA */
        t[7] = naa_length;
        memcpy(t + 8, naa, naa_length);
        t[29] = block_size >> 16; t[30] = block_size >> 8; t[31] = block_size;
        int n = 0;
        for (; n < SEGMENTS && done < blocks; n++) {
            uint32_t count = blocks - done < per_segment ? (uint32_t)(blocks - done) : per_segment;
            unsigned char *s = list + 16 + 32 + n * 28;
            s[0] = 0x02;                   /* block device to block device */
            put16(s + 2, 0x18);
            put16(s + 4, 0);
            put16(s + 6, 0);
            put16(s + 10, count);
            put64(s + 12, src + done);
            put64(s + 20, dst + done);
            done += count;
        }
        list[1] = 2 << 3;                  /* LIST ID USAGE 10b: no status held */
        put16(list + 2, 32);
        put32(list + 8, n * 28);
        struct iscsi_data data = { .size = 16 + 32 + n * 28, .data = list };
        struct scsi_task *task = iscsi_extended_copy_sync(iscsi, lun, &data);
        check(task, "extended copy");
        wire_bytes += data.size;
        scsi_free_scsi_task(task);
    }
}

static void do_rw(uint64_t src, uint64_t dst, uint64_t blocks, int mode_fill, int mode_verify) {
    uint32_t per_command = RW_BYTES / block_size;
    unsigned char *expected = malloc(RW_BYTES);
    for (uint64_t done = 0; done < blocks;) {
        uint32_t count = blocks - done < per_command ? (uint32_t)(blocks - done) : per_command;
        uint32_t bytes = count * block_size;
        if (mode_fill) {
            stamp(expected, src + done, count);
            struct scsi_task *w = iscsi_write16_sync(iscsi, lun, src + done, expected, bytes, block_size, 0, 0, 0, 0, 0);
            check(w, "write16");
            wire_bytes += bytes;
            scsi_free_scsi_task(w);
        } else {
            struct scsi_task *r = iscsi_read16_sync(iscsi, lun, mode_verify ? dst + done : src + done, bytes, block_size, 0, 0, 0, 0, 0);
            check(r, "read16");
            wire_bytes += bytes;
            if (mode_verify) {
                stamp(expected, src + done, count);
                if (memcmp(expected, r->datain.data, bytes) != 0) {
                    fprintf(stderr, "verify: destination LBA %llu.. differs from the source's pattern\n", (unsigned long long)(dst + done));
                    exit(1);
                }
            } else {
                struct scsi_task *w = iscsi_write16_sync(iscsi, lun, dst + done, r->datain.data, bytes, block_size, 0, 0, 0, 0, 0);
                check(w, "write16");
                wire_bytes += bytes;
                scsi_free_scsi_task(w);
            }
            scsi_free_scsi_task(r);
        }
        done += count;
    }
    free(expected);
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: xcopy-bench fill|xcopy|rw|verify URL SRC_LBA [DST_LBA] BLOCKS\n");
        return 2;
    }
    const char *mode = argv[1];
    int fill = strcmp(mode, "fill") == 0;
    if (!fill && argc < 6) {
        fprintf(stderr, "%s needs SRC_LBA DST_LBA BLOCKS\n", mode);
        return 2;
    }
    uint64_t src = strtoull(argv[3], NULL, 0);
    uint64_t dst = fill ? 0 : strtoull(argv[4], NULL, 0);
    uint64_t blocks = strtoull(argv[fill ? 4 : 5], NULL, 0);

    iscsi = iscsi_create_context("iqn.2007-10.com.example:xcopy-bench");
    struct iscsi_url *url = iscsi_parse_full_url(iscsi, argv[2]);
    if (url == NULL) die("url");
    iscsi_set_targetname(iscsi, url->target);
    iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
    iscsi_set_header_digest(iscsi, ISCSI_HEADER_DIGEST_NONE_CRC32C);
    lun = url->lun;
    if (iscsi_full_connect_sync(iscsi, url->portal, lun) != 0) die("connect");
    struct scsi_task *cap = iscsi_readcapacity16_sync(iscsi, lun);
    check(cap, "read capacity 16");
    struct scsi_readcapacity16 *rc = scsi_datain_unmarshall(cap);
    block_size = rc->block_length;
    scsi_free_scsi_task(cap);
    commands = 0;

    double started = now();
    if (strcmp(mode, "xcopy") == 0) do_xcopy(src, dst, blocks);
    else if (strcmp(mode, "rw") == 0) do_rw(src, dst, blocks, 0, 0);
    else if (fill) do_rw(src, 0, blocks, 1, 0);
    else if (strcmp(mode, "verify") == 0) do_rw(src, dst, blocks, 0, 1);
    else { fprintf(stderr, "unknown mode %s\n", mode); return 2; }
    double seconds = now() - started;

    unsigned long long bytes = (unsigned long long)blocks * block_size;
    printf("%s bytes %llu seconds %.3f mibps %.1f wire_bytes %llu commands %llu\n", mode, bytes, seconds,
           bytes / seconds / 1048576.0, wire_bytes, commands);
    iscsi_logout_sync(iscsi);
    iscsi_destroy_context(iscsi);
    return 0;
}
