using System.Buffers;

namespace Tidemark.Server.Tests;

// Handing a staged payload over (SocketInput.HandOver.cs), on the same loopback socket pair: a source
// all off the socket goes to another thread with its pipe, the connection stages the next one in a
// second pipe, waits for a pipe while both are out, and every pipe comes back (or is closed).
public sealed partial class SocketInputSourceTests
{
    private const int Kib = 1024;

    [Fact]
    public async Task TwoSourcesStagedBackToBack_DrainedOnOtherThreads_LandInOrder_AThirdWaitsForAPipe_AndThePipesComeBack()
    {
        var input = new SocketInput(_server, TimeSpan.Zero, 64 * Kib);
        var feature = (IPayloadFeature)input;
        var first = Bytes(256 * Kib, 2);
        var second = Bytes(256 * Kib, 4);
        var third = Bytes(128 * Kib, 6);
        _client.Send(Bytes(48, 1));
        await TakeHeaderAsync(input);
        var sending = Task.Run(() => _client.Send([.. first, .. Bytes(48, 3), .. second, .. Bytes(48, 5), .. third, .. Bytes(40, 7)]));

        // The first is all in its pipe: handed over. The second (a short read left its head in the
        // receive buffer) is staged in the second pipe and handed over too.
        var one = HandOver(feature, first.Length);
        Assert.Equal(0, ((IPayloadSource)input).RemainingBytes);
        await TakeHeaderAsync(input);
        var two = HandOver(feature, second.Length);
        Assert.Equal(2, input.PipesHandedOver);

        // Both pipes are out: the third waits until one comes back.
        await TakeHeaderAsync(input);
        var opening = Task.Run(() => feature.OpenSource(third.Length));
        await Task.Delay(200);
        Assert.False(opening.IsCompleted);

        using var file = File.OpenHandle(_temp.Combine("store"), FileMode.CreateNew, FileAccess.ReadWrite);
        await Task.Run(() =>
        {
            one.FillFile(file, 0, first.Length);
            one.Dispose();
        });
        var three = await opening.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.NotNull(three);
        await Task.Run(() =>
        {
            two.FillFile(file, first.Length, 4096);
            two.FillFile(file, first.Length + 4096, second.Length - 4096);
            two.Dispose();
        });
        three.FillFile(file, first.Length + second.Length, third.Length);
        await sending;

        var trailer = await SocketInputTests.ReadAtLeastAsync(input, 40);
        Assert.Equal(Bytes(40, 7), trailer.Buffer.Slice(0, 40).ToArray());
        input.AdvanceTo(trailer.Buffer.GetPosition(40));
        var written = new byte[first.Length + second.Length + third.Length];
        RandomAccess.Read(file, written, 0);
        Assert.Equal(first.Concat(second).Concat(third).ToArray(), written);
        Assert.Equal(0, input.PipesHandedOver);
        Assert.Equal(2, input.SourcesHandedOver);
        input.Complete();
    }

    [Fact]
    public async Task HandOver_MuchOfThePayloadReadWithItsHeader_IsRefused_AndTheSourceIsConsumedAsBefore()
    {
        var input = new SocketInput(_server, TimeSpan.Zero, 64 * Kib);
        var payload = Bytes(256 * Kib, 9);
        _client.Send([.. Bytes(48, 8), .. payload[..(100 * Kib)]]);
        var first = await SocketInputTests.ReadAtLeastAsync(input, 48 + (32 * Kib));
        input.AdvanceTo(first.Buffer.GetPosition(48));
        var sending = Task.Run(() => _client.Send(payload[(100 * Kib)..]));

        // More than a short read's head is in the receive buffer: copying it out would cost more
        // than writing it inline saves, so the source stays the connection's.
        var source = ((IPayloadFeature)input).OpenSource(payload.Length)!;
        Assert.Equal(payload.Length, source.RemainingBytes);
        Assert.Null(source.HandOver());
        var taken = new byte[payload.Length];
        source.Fill(taken);
        await sending;
        Assert.Equal(payload, taken);
        Assert.Equal(0, input.SourcesHandedOver);
        input.Complete();
    }

    [Fact]
    public async Task ConnectionCompleted_WhileASourceIsHandedOver_TheSourceStillDrains_AndItsPipeIsClosed()
    {
        var input = new SocketInput(_server, TimeSpan.Zero, 64 * Kib);
        var feature = (IPayloadFeature)input;
        var payload = Bytes(256 * Kib, 11);
        _client.Send(Bytes(48, 10));
        await TakeHeaderAsync(input);
        _client.Send(payload);
        var held = HandOver(feature, payload.Length);

        input.Complete();
        var taken = new byte[payload.Length];
        await Task.Run(() => held.Fill(taken));
        held.Dispose();
        Assert.Equal(payload, taken);
        Assert.Equal(0, input.PipesHandedOver);
    }

    [Fact]
    public async Task ADroppedSource_ClosesItsPipe_AndTheNextPayloadStillGetsOne()
    {
        var input = new SocketInput(_server, TimeSpan.Zero, 64 * Kib);
        var feature = (IPayloadFeature)input;
        var dropped = Bytes(256 * Kib, 13);
        var next = Bytes(256 * Kib, 15);
        _client.Send(Bytes(48, 12));
        await TakeHeaderAsync(input);
        var sending = Task.Run(() => _client.Send([.. dropped, .. Bytes(48, 14), .. next]));
        var one = HandOver(feature, dropped.Length);
        one.Fill(new byte[4096]);
        one.Skip();
        Assert.Equal(0, one.RemainingBytes);
        one.Dispose();
        Assert.Equal(0, input.PipesHandedOver);

        await TakeHeaderAsync(input);
        var two = HandOver(feature, next.Length);
        var taken = new byte[next.Length];
        two.Fill(taken);
        two.Dispose();
        await sending;
        Assert.Equal(next, taken);
        Assert.Equal(0, input.PipesHandedOver);
        input.Complete();
    }

    [Fact]
    public async Task BothPipesHeldPastThePayloadDeadline_TheNextSourceFails_InsteadOfWaitingForever()
    {
        var input = new SocketInput(_server, TimeSpan.Zero, 64 * Kib) { PayloadTimeout = TimeSpan.FromMilliseconds(300) };
        var feature = (IPayloadFeature)input;
        _client.Send(Bytes(48, 16));
        await TakeHeaderAsync(input);
        var sending = Task.Run(() => _client.Send([.. Bytes(64 * Kib, 17), .. Bytes(48, 18), .. Bytes(64 * Kib, 19), .. Bytes(48, 20), .. Bytes(64 * Kib, 21)]));
        using var one = HandOver(feature, 64 * Kib);
        await TakeHeaderAsync(input);
        using var two = HandOver(feature, 64 * Kib);
        await TakeHeaderAsync(input);
        await sending;

        var watch = System.Diagnostics.Stopwatch.StartNew();
        var failure = Assert.Throws<PayloadSourceException>(() => feature.OpenSource(64 * Kib));
        Assert.Contains("no staging pipe came back", failure.Message, StringComparison.Ordinal);
        Assert.InRange(watch.ElapsedMilliseconds, 200, 5000);
        input.Complete();
    }

    /// <summary>Opens a source for <paramref name="length"/> and hands it over (it must be staged whole).</summary>
    private static IDetachedPayloadSource HandOver(IPayloadFeature feature, int length)
    {
        var source = feature.OpenSource(length);
        Assert.NotNull(source);
        Assert.Equal(length, source.RemainingBytes);
        var detached = source.HandOver();
        Assert.NotNull(detached);
        Assert.Equal(length, detached.RemainingBytes);
        Assert.Equal(0, source.RemainingBytes);
        return detached;
    }

    /// <summary>Reads a 48-byte header and consumes it (the payload behind it is the next source's).</summary>
    private static async Task TakeHeaderAsync(SocketInput input)
    {
        var read = await SocketInputTests.ReadAtLeastAsync(input, 48);
        input.AdvanceTo(read.Buffer.GetPosition(48));
    }
}
