// msgpackr catches this and uses its JavaScript decoder (see the package.json description).
throw new Error('msgpackr-extract native acceleration is not installed');
