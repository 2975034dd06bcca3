using System.Runtime.InteropServices;
using Tidemark.Engine.Metadata;
using Tidemark.Engine.Storage;

namespace Tidemark.Engine.Tests;

/// <summary>The spare copies of a RADOS store's large writes (ADR 0017): needs no cluster.</summary>
public class RadosWriteBuffersTests
{
    [Fact]
    public unsafe void Rent_AfterALargeBufferCameBack_ReusesIt_ForAnySizeOfItsClass()
    {
        var buffers = new RadosWriteBuffers(RadosBackingStore.ObjectBytes);
        var first = buffers.Rent(1 << 20);
        new Span<byte>((void*)first, 1 << 20).Fill(0xA5); // the whole size rented is usable
        buffers.Return(first, 1 << 20);
        Assert.Equal(1 << 20, buffers.SpareBytes);

        // A slightly smaller write of the same power-of-two class gets the same, already mapped, pages.
        var second = buffers.Rent((1 << 20) - 4096);
        Assert.Equal(first, second);
        Assert.Equal(0, buffers.SpareBytes);
        buffers.Return(second, (1 << 20) - 4096);
        buffers.Clear();
        Assert.Equal(0, buffers.SpareBytes);
    }

    [Fact]
    public unsafe void Return_PastTheSpareBound_FreesTheRest_AndSmallCopiesAreNeverKept()
    {
        var buffers = new RadosWriteBuffers(RadosBackingStore.ObjectBytes);
        var rented = new List<nint>();
        for (var i = 0; i < 2 * RadosWriteBuffers.MaxSpareBytes / RadosBackingStore.ObjectBytes; i++)
        {
            var buffer = buffers.Rent(RadosBackingStore.ObjectBytes);
            new Span<byte>((void*)buffer, RadosBackingStore.ObjectBytes).Fill(1);
            rented.Add(buffer);
        }

        foreach (var buffer in rented)
        {
            buffers.Return(buffer, RadosBackingStore.ObjectBytes);
        }

        Assert.Equal(RadosWriteBuffers.MaxSpareBytes, buffers.SpareBytes);

        var small = buffers.Rent(4096);
        new Span<byte>((void*)small, 4096).Fill(2);
        buffers.Return(small, 4096);
        Assert.Equal(RadosWriteBuffers.MaxSpareBytes, buffers.SpareBytes);
        buffers.Clear();
        Assert.Equal(0, buffers.SpareBytes);
    }

    [Fact]
    public unsafe void ForLargeCopies_ServesAnObjectSizedBlockFromTheHeap_NotAMappingOfItsOwn()
    {
        NativeHeap.ForLargeCopies(RadosBackingStore.ObjectBytes + (64 << 10), 16 << 20);
        var block = (byte*)NativeMemory.Alloc(1 << 20);
        try
        {
            // glibc marks a block that got a mapping of its own (past the engine's 128 KiB mmap
            // threshold: faulted in zeroed on first touch, unmapped on free) with bit 1 of the size
            // word just before it.
            var size = *(nuint*)(block - sizeof(nuint));
            Assert.True((size & 2) == 0, $"a 1 MiB block was mapped on its own (size word {size:x})");
        }
        finally
        {
            NativeMemory.Free(block);
        }
    }
}
