using SharpFuzz;
using Tidemark.Fuzz;

// tidemark-fuzz TARGET            under afl-fuzz (scripts/fuzz): one input per run from AFL
// tidemark-fuzz seeds TARGET DIR  writes the target's seed inputs into DIR
// tidemark-fuzz replay TARGET FILE...  runs inputs once (to reproduce what AFL found)
if (args.Length >= 1 && FuzzTargets.All.TryGetValue(args[0], out var target))
{
    Fuzzer.OutOfProcess.Run(stream =>
    {
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        target(copy.ToArray());
    });
    return 0;
}

if (args is ["seeds", var name, var directory])
{
    Directory.CreateDirectory(directory);
    var seeds = Seeds.For(name);
    for (var i = 0; i < seeds.Count; i++)
    {
        File.WriteAllBytes(Path.Combine(directory, $"seed-{i:D2}"), seeds[i]);
    }

    Console.WriteLine($"{seeds.Count} seeds for {name} in {directory}");
    return 0;
}

if (args is ["replay", var replayed, .. var files] && FuzzTargets.All.TryGetValue(replayed, out var replay))
{
    var failed = 0;
    foreach (var file in files)
    {
        try
        {
            replay(File.ReadAllBytes(file));
            Console.WriteLine($"ok      {file}");
        }
        catch (Exception ex)
        {
            failed++;
            Console.WriteLine($"FAILED  {file}: {ex}");
        }
    }

    return failed == 0 ? 0 : 1;
}

Console.Error.WriteLine($"usage: tidemark-fuzz TARGET | seeds TARGET DIR | replay TARGET FILE...   (targets: {string.Join(", ", FuzzTargets.All.Keys)})");
return 2;
